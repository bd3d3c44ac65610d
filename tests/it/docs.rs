//! `lake docs`: the site opened in headless Chromium (`chromium --dump-dom`, the DOM after the
//! page's scripts ran): on the built demo (every model drawn, a model's page with its columns,
//! lineage, test results and table facts, no script error; the README's commands), on a
//! generated project of 1,000 models not built yet, with text that would break out of the page's
//! script; and `--serve` over real HTTP until SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::demo::{run_demo_script, shell_words};
use crate::support::TestProject;

/// The DOM of `file` (with `#hash`) after its scripts ran, in headless Chromium with a
/// throwaway profile (tests run in parallel).
fn dump_dom(file: &Path, hash: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("file://{}{hash}", file.display());
    let out = Command::new("chromium")
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .output()
        .expect("run chromium (Debian package `chromium`; .ci/run installs it)");
    assert!(out.status.success(), "chromium {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// The markup between `open` (e.g. `<svg id="dag"`) and the next `close`.
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let start = dom.find(open).unwrap_or_else(|| panic!("no {open} in the page:\n{}", &dom[..dom.len().min(3000)]));
    let end = dom[start..].find(close).map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// What the page wrote into its `#errors` element (script errors); empty when none.
fn script_errors(dom: &str) -> String {
    let errors = element(dom, "<div id=\"errors\">", "</div>");
    errors.trim_start_matches("<div id=\"errors\">").to_string()
}

/// Milliseconds from navigation to the first drawing, as the page records it.
fn render_ms(dom: &str) -> u64 {
    let at = element(dom, "data-render-ms=\"", ">");
    let digits: String = at.trim_start_matches("data-render-ms=\"").chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("render time: {at}"))
}

/// The row of `column` in a page's column table.
fn column_row<'a>(page: &'a str, column: &str) -> &'a str {
    element(page, &format!("<tr data-column=\"{column}\">"), "</tr>")
}

/// The README's "Docs" commands (`cargo run --release -- ARGS`), as `lake` arguments.
fn readme_docs_commands() -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for l in crate::support::readme::sh_lines("Docs") {
        let words = shell_words(&l);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let ["cargo", "run", "--release", "--", args @ ..] = words.as_slice() else {
            panic!("a README docs command this test does not know how to run: {words:?}");
        };
        commands.push(args.iter().map(|a| a.to_string()).collect());
    }
    commands
}

#[test]
fn the_demo_docs_draw_every_model_and_show_a_models_columns_lineage_tests_and_table() {
    let p = TestProject::demo();
    let out = run_demo_script(&p);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The README's commands write target/docs/index.html; the one that serves, on a free port.
    let commands = readme_docs_commands();
    assert!(commands.len() >= 2, "{commands:?}");
    for args in &commands {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Some(at) = args.iter().position(|a| *a == "--serve") {
            args[at + 1] = "127.0.0.1:0";
            let (child, url) = serve(&p, &args);
            let (status, body) = get(&url, "/");
            assert!(status.contains("200") && body.contains("customer_360"), "{status}");
            stop(child);
        } else {
            let out = p.lake(&args);
            out.assert_ok();
            assert!(out.stdout.contains("index.html"), "{args:?}: {}", out.stdout);
        }
    }
    let index = p.path().join("target/docs/index.html");
    let html = std::fs::read_to_string(&index).expect("target/docs/index.html");
    // Self-contained: nothing fetched from anywhere.
    for outside in ["src=\"http", "href=\"http", "<link ", "fetch(", "src=\"//"] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }

    let dom = dump_dom(&index, "#model=customer_360");
    assert_eq!(script_errors(&dom), "", "script errors");
    let dag = element(&dom, "<svg id=\"dag\"", "</svg>");
    let ls = p.lake(&["ls", "--output", "json"]);
    ls.assert_ok();
    let models: Vec<String> = ls.stdout.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["name"].as_str().unwrap().to_string()).collect();
    assert!(models.len() >= 10, "{models:?}");
    for m in &models {
        assert!(dag.contains(&format!("data-key=\"model={m}\"")), "{m} is not drawn");
    }
    for t in ["raw.shopify_orders", "raw.stripe_charges", "raw.hubspot_contacts"] {
        assert!(dag.contains(&format!("data-key=\"source={t}\"")), "{t} is not drawn");
    }
    // Upstream and downstream of the selected model are marked in the drawing.
    assert!(dag.contains("class=\"node model sel\" data-i=") && dag.contains("data-key=\"model=customer_360\""), "customer_360 selected");
    assert!(dag.contains("<g class=\"node model up\" data-i="), "models upstream of customer_360 are marked");
    assert!(dag.contains("<g class=\"node source up\" data-i="), "sources upstream of customer_360 are marked");

    // The page: each column with the columns it reads, as `lake lineage` has them.
    let page = element(&dom, "<article id=\"page\">", "</article>");
    assert!(page.contains("<h1>customer_360</h1>"), "{page}");
    let lineage = p.lake(&["lineage", "customer_360", "--output", "json"]);
    lineage.assert_ok();
    let lineage: Value = serde_json::from_str(&lineage.stdout).unwrap();
    let columns = lineage["columns"].as_array().unwrap();
    assert!(columns.len() >= 8);
    for c in columns {
        let row = column_row(page, c["column"].as_str().unwrap());
        for source in c["children"].as_array().unwrap() {
            let name = format!("{}.{}", source["table"].as_str().unwrap(), source["column"].as_str().unwrap());
            assert!(row.contains(&name), "column {} lists {name}:\n{row}", c["column"]);
        }
    }
    assert!(column_row(page, "lifetime_value").contains("analytics.customer_metrics.net_revenue"));
    // Data tests with their result in run_results.json, the last run and the table's facts.
    let tests = element(page, "<table class=\"tests\">", "</table>");
    assert!(tests.contains("unique_customer_360_entity_id") && tests.contains("class=\"pass\""), "{tests}");
    for fact in ["rows written", "snapshot", "records", "data files", "size", "snapshots", "Compiled SQL"] {
        assert!(page.contains(&format!(">{fact}<")), "the page shows {fact}:\n{page}");
    }

    // A source's page: where it is loaded from; a Rust model's: its function.
    let source = dump_dom(&index, "#source=raw.shopify_orders");
    let page = element(&source, "<article id=\"page\">", "</article>");
    assert!(page.contains("lake ingest shopify_orders"), "{page}");
    assert!(column_row(page, "total_price").contains("<td>"), "{page}");
    let rust = dump_dom(&index, "#model=entity_index");
    assert!(element(&rust, "<article id=\"page\">", "</article>").contains("Rust model"));
}

/// `n` SQL models over one seeded source, across three layers: 20 staging models, 480
/// analytics models (half of them reading another analytics model) and marts joining two.
fn generated_project(n: usize) -> TestProject {
    let p = TestProject::with_orders_seed();
    p.write("lake.toml", "name = \"big\"\nlayers = [\"raw\", \"staging\", \"analytics\", \"marts\"]\n");
    let (staging, analytics) = (20, n * 12 / 25);
    for i in 0..staging {
        p.write(&format!("models/staging/s_{i}.sql"), &format!("select id, amount + {i} as amount from {{{{ source('raw', 'orders') }}}}\n"));
    }
    for i in 0..analytics {
        let from = if i < analytics / 2 { format!("s_{}", i % staging) } else { format!("a_{}", i - analytics / 2) };
        p.write(&format!("models/analytics/a_{i}.sql"), &format!("select id, amount * 2 as amount from {{{{ ref('{from}') }}}}\n"));
    }
    for i in 0..n - staging - analytics {
        p.write(
            &format!("models/marts/m_{i}.sql"),
            &format!(
                "select a.id, a.amount + b.amount as amount from {{{{ ref('a_{}') }}}} a join {{{{ ref('a_{}') }}}} b on a.id = b.id\n",
                i % analytics,
                (i * 7 + 3) % analytics
            ),
        );
    }
    p
}

#[test]
fn a_thousand_model_project_not_built_yet_renders_without_errors() {
    let p = generated_project(1000);
    p.lake(&["seed"]).assert_ok();
    let out = p.lake(&["docs", "--out", "site"]);
    out.assert_ok();
    assert!(out.stdout.contains("(1001 nodes)"), "{}", out.stdout);
    let index = p.path().join("site/index.html");
    let started = std::time::Instant::now();
    let dom = dump_dom(&index, "#model=m_40");
    let wall = started.elapsed();
    assert_eq!(script_errors(&dom), "", "script errors");
    // Recorded, not asserted: timing depends on the machine.
    let bytes = std::fs::metadata(&index).unwrap().len();
    eprintln!("1,000 models: index.html {} KiB, drawn {} ms after navigation; chromium ran {:.2} s", bytes / 1024, render_ms(&dom), wall.as_secs_f64());
    let dag = element(&dom, "<svg id=\"dag\"", "</svg>");
    assert_eq!(dag.matches("<g class=\"node").count(), 1001);
    assert!(dag.contains("data-key=\"model=m_499\"") && dag.contains("data-key=\"model=s_0\""));
    // m_40 reads a_40 (which reads s_0) and a_283, which reads a_43, which reads s_3.
    for up in ["a_40", "a_283", "a_43", "s_0", "s_3"] {
        let at = dag.find(&format!("data-key=\"model={up}\"")).unwrap();
        let open = dag[..at].rfind("<g class=\"").unwrap();
        assert!(dag[open..at].contains(" up\""), "{up} marked upstream: {}", &dag[open..at]);
    }
    // Columns and lineage without a build: traced through both inputs to the seed.
    let page = element(&dom, "<article id=\"page\">", "</article>");
    let amount = column_row(page, "amount");
    assert!(amount.contains("analytics.a_40.amount") && amount.contains("analytics.a_283.amount"), "{amount}");
    assert!(amount.contains("raw.orders.amount"), "traced to the source: {amount}");
    assert!(page.contains("No table in the catalog yet"), "{page}");
    // Only the rows of the node list in view exist.
    let list = element(&dom, "<div id=\"list-inner\"", "</nav>");
    assert!(list.matches("<a ").count() < 200, "the list renders lazily");
}

/// `lake ARGS` (`docs --serve ADDR`) in `p`, once it prints the URL; with that URL.
fn serve(p: &TestProject, args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(crate::support::lake_bin())
        .args(args)
        .current_dir(p.path())
        .env_remove("LAKE_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lake docs --serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("lake docs printed the URL").expect("stdout");
        if let Some(rest) = line.split("serving the docs on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, url)
}

/// SIGTERM to a serving `lake docs`: it stops with exit code 0.
fn stop(mut child: std::process::Child) {
    // SAFETY: sends a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "lake docs --serve on SIGTERM: {status}");
}

/// A plain HTTP/1.1 GET: status line and body.
fn get(url: &str, path: &str) -> (String, String) {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn docs_serve_over_http_until_sigterm_and_text_cannot_break_out_of_the_page() {
    let p = TestProject::with_orders_seed();
    p.write(
        "models/staging/big_orders.sql",
        "select id, amount from {{ source('raw', 'orders') }} where amount > 5\n",
    );
    p.write(
        "models/staging/big_orders.yml",
        "models:\n  - name: big_orders\n    description: \"Orders over 5 </script><script>document.title='broken'</script> <!-- done\"\n    columns:\n      - name: id\n        description: The order.\n        data_tests: [unique, not_null]\n",
    );
    p.lake(&["build"]).assert_ok();
    let (child, url) = serve(&p, &["docs", "--serve", "127.0.0.1:0"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, body) = get(&url, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("id=\"dag\"") && body.contains("big_orders"), "{body}");
    let (status, _) = get(&url, "/index.html");
    assert!(status.contains("200"), "{status}");
    let (status, _) = get(&url, "/../lake.toml");
    assert!(status.contains("404") || status.contains("400"), "nothing outside the folder: {status}");
    stop(child);

    // The description shows as text; the page's script still ran.
    let dom = dump_dom(&p.path().join("target/docs/index.html"), "#model=big_orders");
    assert_eq!(script_errors(&dom), "", "script errors");
    assert!(dom.contains("<title>test · lake docs</title>"), "a description's </script> ended the page's data and ran the script after it");
    let page = element(&dom, "<article id=\"page\">", "</article>");
    assert!(page.contains("Orders over 5 &lt;/script&gt;&lt;script&gt;"), "{page}");
    let tests = element(page, "<table class=\"tests\">", "</table>");
    assert_eq!(tests.matches("class=\"pass\"").count(), 2, "{tests}");
    assert!(column_row(page, "id").contains("raw.orders.id"));
}
