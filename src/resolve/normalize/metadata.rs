//! Each thread's own copy of `phonenumber`'s metadata, so that phone numbers parse on every
//! core.
//!
//! `phonenumber` 0.3.10 compiles its metadata's regular expressions lazily into one cache per
//! `Database`, behind a mutex that every match takes (and, inside it, hashes the expression's
//! source, which runs to kilobytes for some countries). With its one default database, parsing
//! from two threads is slower than from one. A `Database` built here from the default's own
//! fields has its own cache: the same metadata, the same parser, no shared lock. It is built
//! once per thread (about 50 ms), from [`DATABASE`] itself, so it cannot drift from the
//! version of the crate; [`rebuild`] is public so that a test can compare the two whole.

use std::cell::OnceCell;

use phonenumber::metadata::loader;
use phonenumber::metadata::{DATABASE, Database, Descriptor, Format, Metadata};

thread_local! {
    static OWN: OnceCell<Database> = const { OnceCell::new() };
}

/// Runs `f` with this thread's copy of the metadata.
pub(super) fn with_database<R>(f: impl FnOnce(&Database) -> R) -> R {
    OWN.with(|own| f(own.get_or_init(|| rebuild(&DATABASE))))
}

/// A `Database` with the same metadata as `from`, in the same order (each country code's main
/// region first), and a regex cache of its own.
pub fn rebuild(from: &Database) -> Database {
    // Regions of the non-geographic "001" share one id: the one `by_id` returns is the last
    // given, so it is given last here too.
    let last_001 = from.by_id("001").map(Metadata::country_code);
    let mut codes: Vec<u16> = (1..1000).filter(|c| Some(*c) != last_001).collect();
    codes.extend(last_001);
    let metadata = codes
        .into_iter()
        .filter_map(|code| from.by_code(&code))
        .flatten()
        .map(unload)
        .collect();
    Database::from(metadata).expect("phonenumber's own metadata loads")
}

/// The loader's form of a region's metadata: what `Database::from` was given for it.
fn unload(meta: &Metadata) -> loader::Metadata {
    let d = meta.descriptors();
    loader::Metadata {
        general: Some(descriptor(d.general())),
        fixed_line: d.fixed_line().map(descriptor),
        mobile: d.mobile().map(descriptor),
        toll_free: d.toll_free().map(descriptor),
        premium_rate: d.premium_rate().map(descriptor),
        shared_cost: d.shared_cost().map(descriptor),
        personal_number: d.personal_number().map(descriptor),
        voip: d.voip().map(descriptor),
        pager: d.pager().map(descriptor),
        uan: d.uan().map(descriptor),
        emergency: d.emergency().map(descriptor),
        voicemail: d.voicemail().map(descriptor),
        short_code: d.short_code().map(descriptor),
        standard_rate: d.standard_rate().map(descriptor),
        carrier: d.carrier().map(descriptor),
        no_international: d.no_international().map(descriptor),
        id: Some(meta.id().to_string()),
        country_code: Some(meta.country_code()),
        international_prefix: meta.international_prefix().map(|r| r.as_str().to_string()),
        preferred_international_prefix: meta.preferred_international_prefix().map(str::to_string),
        national_prefix: meta.national_prefix().map(str::to_string),
        preferred_extension_prefix: meta.preferred_extension_prefix().map(str::to_string),
        national_prefix_for_parsing: meta.national_prefix_for_parsing().map(|r| r.as_str().to_string()),
        national_prefix_transform_rule: meta.national_prefix_transform_rule().map(str::to_string),
        formats: meta.formats().iter().map(format).collect(),
        international_formats: meta.international_formats().iter().map(format).collect(),
        main_country_for_code: meta.is_main_country_for_code(),
        leading_digits: meta.leading_digits().map(|r| r.as_str().to_string()),
        mobile_number_portable: meta.is_mobile_number_portable(),
        ..Default::default()
    }
}

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(d.national_number().as_str().to_string()),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_string),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(f.pattern().as_str().to_string()),
        format: Some(f.format().to_string()),
        leading_digits: f.leading_digits().iter().map(|r| r.as_str().to_string()).collect(),
        national_prefix_formatting_rule: f.national_prefix().map(str::to_string),
        national_prefix_optional_when_formatting: f.is_national_prefix_optional(),
        domestic_carrier: f.domestic_carrier().map(str::to_string),
    }
}
