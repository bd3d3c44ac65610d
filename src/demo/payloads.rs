//! The providers' webhook bodies, in their real shapes: Shopify `orders/create|updated` and
//! `customers/create|update` (nested customer, line items, addresses, money as strings),
//! Stripe events `charge.succeeded|refunded|failed` and `customer.created` (amounts in cents),
//! HubSpot `contact.creation` (the contact with its `properties` map, as a workflow webhook
//! sends it) and `contact.propertyChange` subscription events.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::people::{Person, Rng};

/// One webhook delivery.
#[derive(Debug, Clone)]
pub struct Event {
    pub provider: &'static str,
    /// The raw table it lands in (`shopify_orders`, `stripe_charges`, ...).
    pub table: &'static str,
    /// Shopify's topic header, Stripe's `type`, HubSpot's `subscriptionType`.
    pub topic: String,
    /// The delivery id (Shopify's `X-Shopify-Webhook-Id`; the event id elsewhere).
    pub id: String,
    /// When the provider sent it (a late event is sent after events that happened later).
    pub sent_at: DateTime<Utc>,
    /// The body: JSON, or a broken one.
    pub body: String,
    /// The source record it is about, for the truth file: (source, id, person).
    pub record: Option<(&'static str, String, usize)>,
}

const PRODUCTS: &[(&str, &str, u64)] = &[
    ("Trail Runner Shoe", "TRS-01", 8900), ("Merino Sock 3-Pack", "MSK-03", 2400), ("Rain Shell Jacket", "RSJ-11", 15900),
    ("Insulated Bottle", "INB-07", 3200), ("Day Pack 22L", "DPK-22", 7400), ("Headlamp", "HLP-02", 2900),
];

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn address(p: &Person, first: &str, last: &str, phone: &str) -> Value {
    json!({
        "first_name": first, "last_name": last, "address1": p.street, "address2": null, "city": p.city,
        "province": p.state, "province_code": p.state_code, "country": "United States", "country_code": "US",
        "zip": p.zip, "phone": phone, "company": null, "name": format!("{first} {last}"),
    })
}

/// Everything one person does over the days, as the three providers report it.
pub struct Activity<'a> {
    pub rng: &'a mut Rng,
    pub start: DateTime<Utc>,
    pub days: u32,
    pub next_order: &'a mut u64,
}

impl Activity<'_> {
    /// A random moment in the window.
    fn moment(&mut self) -> DateTime<Utc> {
        self.start + Duration::seconds(self.rng.below(self.days as u64 * 86_400) as i64)
    }

    /// The person's events: a Shopify customer and orders, Stripe customer and charges, a
    /// HubSpot contact; each source only for some people.
    pub fn events(&mut self, p: &Person) -> Vec<Event> {
        let mut out = Vec::new();
        let shopify = self.rng.chance(0.8);
        let stripe = self.rng.chance(if shopify { 0.7 } else { 0.5 });
        let hubspot = self.rng.chance(0.6) || !(shopify || stripe);
        let stripe_customer = format!("cus_{:014x}", self.rng.next_u64() >> 8);
        if stripe {
            out.push(self.stripe_customer(p, &stripe_customer));
        }
        if shopify {
            let customer_id = 6_100_000_000 + p.id as u64;
            let joined = self.moment();
            out.push(self.shopify_customer(p, customer_id, joined, "customers/create"));
            if self.rng.chance(0.3) {
                out.push(self.shopify_customer(p, customer_id, joined + Duration::hours(30), "customers/update"));
            }
            for _ in 0..1 + self.rng.below(3) {
                out.extend(self.order(p, customer_id, stripe.then_some(stripe_customer.as_str())));
            }
        }
        if hubspot {
            out.extend(self.hubspot_contact(p));
        }
        out
    }

    fn shopify_customer(&mut self, p: &Person, id: u64, at: DateTime<Utc>, topic: &str) -> Event {
        let (first, last) = p.name(self.rng);
        let phone = p.phone(self.rng);
        let body = json!({
            "id": id, "email": p.email(self.rng), "first_name": first, "last_name": last, "phone": phone,
            "created_at": at.to_rfc3339(), "updated_at": at.to_rfc3339(), "state": "enabled", "verified_email": true,
            "currency": "USD", "tags": "", "orders_count": 0, "total_spent": "0.00",
            "default_address": address(p, &first, &last, &phone),
            "admin_graphql_api_id": format!("gid://shopify/Customer/{id}"),
        });
        self.shopify(topic, "shopify_customers", at, body, Some(("shopify", id.to_string(), p.id)))
    }

    fn shopify(&mut self, topic: &str, table: &'static str, at: DateTime<Utc>, body: Value, record: Option<(&'static str, String, usize)>) -> Event {
        Event {
            provider: "shopify",
            table,
            topic: topic.to_string(),
            id: format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", self.rng.next_u64() as u32, self.rng.below(0xffff), self.rng.below(0xfff), self.rng.below(0xfff), self.rng.next_u64() >> 16),
            sent_at: at,
            body: body.to_string(),
            record,
        }
    }

    /// An order (`orders/create`, then `orders/updated` when it is fulfilled or refunded) and its
    /// Stripe charge when the customer pays through Stripe.
    fn order(&mut self, p: &Person, customer_id: u64, stripe_customer: Option<&str>) -> Vec<Event> {
        *self.next_order += 1;
        let (id, number) = (5_000_000_000 + *self.next_order, 1000 + *self.next_order);
        let at = self.moment();
        let (first, last) = p.name(self.rng);
        let phone = p.phone(self.rng);
        let email = p.email(self.rng);
        let lines: Vec<(usize, u64)> = (0..1 + self.rng.below(3)).map(|_| (self.rng.below(PRODUCTS.len() as u64) as usize, 1 + self.rng.below(3))).collect();
        let subtotal: u64 = lines.iter().map(|(i, q)| PRODUCTS[*i].2 * q).sum();
        let discount = if self.rng.chance(0.2) { subtotal / 10 } else { 0 };
        let tax = (subtotal - discount) * 8 / 100;
        let shipping = if subtotal > 10_000 { 0 } else { 695 };
        let total = subtotal - discount + tax + shipping;
        let failed = stripe_customer.is_some() && self.rng.chance(0.05);
        let refunded = !failed && self.rng.chance(0.06);
        let line_items: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(n, (i, q))| {
                let (title, sku, price) = PRODUCTS[*i];
                json!({"id": id * 10 + n as u64, "product_id": 8_800_000 + *i as u64, "variant_id": 9_900_000 + *i as u64,
                       "title": title, "sku": sku, "quantity": q, "price": money(price), "total_discount": "0.00",
                       "requires_shipping": true, "taxable": true})
            })
            .collect();
        let order = |financial: &str, fulfillment: Value, updated: DateTime<Utc>| {
            json!({
                "id": id, "admin_graphql_api_id": format!("gid://shopify/Order/{id}"), "order_number": number,
                "name": format!("#{number}"), "email": email, "phone": phone, "created_at": at.to_rfc3339(),
                "updated_at": updated.to_rfc3339(), "processed_at": at.to_rfc3339(), "currency": "USD",
                "presentment_currency": "USD", "total_price": money(total), "subtotal_price": money(subtotal - discount),
                "total_tax": money(tax), "total_discounts": money(discount), "total_line_items_price": money(subtotal),
                "total_shipping_price_set": {"shop_money": {"amount": money(shipping), "currency_code": "USD"},
                                             "presentment_money": {"amount": money(shipping), "currency_code": "USD"}},
                "financial_status": financial, "fulfillment_status": fulfillment, "test": false,
                "customer": {"id": customer_id, "email": email, "first_name": first, "last_name": last, "phone": phone,
                             "admin_graphql_api_id": format!("gid://shopify/Customer/{customer_id}")},
                "line_items": line_items,
                "shipping_address": address(p, &first, &last, &phone),
                "billing_address": address(p, &first, &last, &phone),
            })
        };
        let record = Some(("shopify", customer_id.to_string(), p.id));
        let mut out = vec![self.shopify("orders/create", "shopify_orders", at, order(if failed { "pending" } else { "paid" }, Value::Null, at), record.clone())];
        let later = at + Duration::hours(2 + self.rng.below(48) as i64);
        if refunded {
            out.push(self.shopify("orders/updated", "shopify_orders", later, order("refunded", json!("fulfilled"), later), None));
        } else if !failed && self.rng.chance(0.7) {
            out.push(self.shopify("orders/updated", "shopify_orders", later, order("paid", json!("fulfilled"), later), None));
        }
        if let Some(cus) = stripe_customer {
            out.extend(self.charges(p, cus, id, total, at, failed, refunded.then_some(later)));
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn charges(&mut self, p: &Person, customer: &str, order: u64, amount: u64, at: DateTime<Utc>, failed: bool, refunded_at: Option<DateTime<Utc>>) -> Vec<Event> {
        let charge = format!("ch_{:024x}", (self.rng.next_u64() as u128) << 32 | self.rng.below(1 << 32) as u128);
        let (first, last) = p.name(self.rng);
        let email = p.email(self.rng);
        let phone = p.phone(self.rng);
        let object = |status: &str, refunded: bool, failure: Value| {
            json!({
                "id": charge, "object": "charge", "amount": amount, "amount_captured": if status == "succeeded" { amount } else { 0 },
                "amount_refunded": if refunded { amount } else { 0 }, "currency": "usd", "customer": customer,
                "description": format!("Shopify order {order}"), "paid": status == "succeeded", "refunded": refunded,
                "status": status, "failure_code": failure, "failure_message": null, "created": at.timestamp(),
                "receipt_email": email, "livemode": false,
                "billing_details": {"email": email, "name": format!("{first} {last}"), "phone": phone,
                                    "address": {"line1": p.street, "city": p.city, "state": p.state_code, "postal_code": p.zip, "country": "US"}},
                "metadata": {"shopify_order_id": order.to_string()},
                "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
            })
        };
        let mut out = Vec::new();
        let record = Some(("stripe", customer.to_string(), p.id));
        if failed {
            out.push(self.stripe("charge.failed", "stripe_charges", at, object("failed", false, json!("card_declined")), record));
        } else {
            out.push(self.stripe("charge.succeeded", "stripe_charges", at, object("succeeded", false, Value::Null), record));
            if let Some(when) = refunded_at {
                out.push(self.stripe("charge.refunded", "stripe_charges", when, object("succeeded", true, Value::Null), None));
            }
        }
        out
    }

    fn stripe_customer(&mut self, p: &Person, id: &str) -> Event {
        let at = self.moment();
        let (first, last) = p.name(self.rng);
        let object = json!({
            "id": id, "object": "customer", "email": p.email(self.rng), "name": format!("{first} {last}"),
            "phone": p.phone(self.rng), "created": at.timestamp(), "currency": "usd", "delinquent": false, "livemode": false,
            "address": {"line1": p.street, "city": p.city, "state": p.state_code, "postal_code": p.zip, "country": "US"},
            "metadata": {},
        });
        self.stripe("customer.created", "stripe_customers", at, object, Some(("stripe", id.to_string(), p.id)))
    }

    fn stripe(&mut self, kind: &str, table: &'static str, at: DateTime<Utc>, object: Value, record: Option<(&'static str, String, usize)>) -> Event {
        let id = format!("evt_{:024x}", (self.rng.next_u64() as u128) << 32 | self.rng.below(1 << 32) as u128);
        let body = json!({
            "id": id, "object": "event", "api_version": "2024-06-20", "created": at.timestamp(), "type": kind,
            "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
            "data": {"object": object},
        });
        Event { provider: "stripe", table, topic: kind.to_string(), id, sent_at: at, body: body.to_string(), record }
    }

    fn hubspot_contact(&mut self, p: &Person) -> Vec<Event> {
        let vid = 70_000 + p.id as u64;
        let at = self.moment();
        let (first, last) = p.name(self.rng);
        let email = p.email(self.rng);
        let props = json!({
            "email": {"value": email}, "firstname": {"value": first}, "lastname": {"value": last},
            "phone": {"value": p.phone(self.rng)}, "city": {"value": p.city}, "state": {"value": p.state_code},
            "zip": {"value": p.zip}, "lifecyclestage": {"value": "lead"},
            "createdate": {"value": at.timestamp_millis().to_string()}, "lastmodifieddate": {"value": at.timestamp_millis().to_string()},
        });
        let creation = json!([{
            "eventId": self.rng.below(1 << 40), "subscriptionId": 2_400_001, "portalId": 62_515, "appId": 1_160_452,
            "occurredAt": at.timestamp_millis(), "subscriptionType": "contact.creation", "attemptNumber": 0,
            "objectId": vid, "changeFlag": "CREATED", "changeSource": "CRM", "vid": vid, "properties": props,
        }]);
        let mut out = vec![self.hubspot("contact.creation", at, creation, Some(("hubspot", vid.to_string(), p.id)))];
        if self.rng.chance(0.4) {
            let later = at + Duration::hours(1 + self.rng.below(72) as i64);
            let (name, value) = match self.rng.below(3) {
                0 => ("lifecyclestage", "customer".to_string()),
                1 => ("phone", p.phone(self.rng)),
                _ => ("email", p.email(self.rng)),
            };
            let change = json!([{
                "eventId": self.rng.below(1 << 40), "subscriptionId": 2_400_002, "portalId": 62_515, "appId": 1_160_452,
                "occurredAt": later.timestamp_millis(), "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                "objectId": vid, "propertyName": name, "propertyValue": value, "changeSource": "CRM",
            }]);
            out.push(self.hubspot("contact.propertyChange", later, change, None));
        }
        out
    }

    fn hubspot(&mut self, kind: &str, at: DateTime<Utc>, body: Value, record: Option<(&'static str, String, usize)>) -> Event {
        Event {
            provider: "hubspot",
            table: "hubspot_contacts",
            topic: kind.to_string(),
            id: format!("hs-{:016x}", self.rng.next_u64()),
            sent_at: at,
            body: body.to_string(),
            record,
        }
    }
}
