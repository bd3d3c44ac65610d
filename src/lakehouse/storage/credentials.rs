//! The effective S3 settings: `[storage]` in `lake.toml` first, then the standard AWS
//! environment variables, then a profile of the shared AWS files, resolved ONCE into the
//! storage properties that both iceberg's FileIO and `lake`'s own OpenDAL operators use.
//!
//! Credentials are taken as a whole from the first place that has them: `[storage]`
//! `s3.access-key-id` + `s3.secret-access-key` (+ `s3.session-token`); else the profile named by
//! `[storage] "s3.profile"`; else `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+
//! `AWS_SESSION_TOKEN`); else the profile `AWS_PROFILE` (or `default`) of
//! `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`) and `AWS_CONFIG_FILE` (`~/.aws/config`).
//! Region and endpoint follow the same order (`AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, the profile's `region`/`endpoint_url`). Where the
//! credentials came from is kept under [`CREDENTIALS_FROM`] so a refusal can name what to fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// Property naming where the credentials in effect came from (see [`credentials_hint`]); its
/// name avoids the words that mark a secret, as its value (`lake.toml`, `env`, ...) is none.
pub const CREDENTIALS_FROM: &str = "lake.s3.keys-from";
/// `[storage]` key naming a profile of the shared AWS files.
pub const PROFILE: &str = "s3.profile";

const ACCESS_KEY: &str = "s3.access-key-id";
const SECRET_KEY: &str = "s3.secret-access-key";
const SESSION_TOKEN: &str = "s3.session-token";
const REGION: &str = "s3.region";
const ENDPOINT: &str = "s3.endpoint";
const PATH_STYLE: &str = "s3.path-style-access";
const DISABLE_CONFIG_LOAD: &str = "s3.disable-config-load";

/// Where the credentials came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    LakeToml,
    Env,
    /// A profile, the file that held its keys, and whether `s3.profile` (not `AWS_PROFILE`) named it.
    Profile { name: String, file: PathBuf, from_toml: bool },
}

/// `props` (the `[storage]` and catalog properties) completed from the environment and the
/// shared AWS files, as iceberg's FileIO and [`super::s3_operator`] take them.
pub fn resolve_storage(props: &HashMap<String, String>) -> Result<HashMap<String, String>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    resolve_with(props, &env)
}

fn resolve_with(props: &HashMap<String, String>, env: &dyn Fn(&str) -> Option<String>) -> Result<HashMap<String, String>> {
    let mut out = props.clone();
    let set = |key: &str| props.get(key).filter(|v| !v.trim().is_empty()).cloned();
    let explicit_profile = set(PROFILE);
    let profile_name = explicit_profile.clone().or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let profile = Profile::load(&profile_name, env)?;
    if let Some(name) = &explicit_profile {
        if profile.is_empty() {
            bail!(
                "lake.toml: [storage] \"{PROFILE}\" = \"{name}\": no such profile in {} or {}",
                profile.credentials_file.display(),
                profile.config_file.display()
            );
        }
    }
    let from_toml = (set(ACCESS_KEY), set(SECRET_KEY));
    let from_env = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"));
    let (keys, source) = if from_toml.0.is_some() || from_toml.1.is_some() {
        let (Some(key), Some(secret)) = from_toml else {
            bail!("lake.toml: [storage] sets only one of \"{ACCESS_KEY}\" and \"{SECRET_KEY}\": set both");
        };
        (Some((key, secret, set(SESSION_TOKEN))), Some(Source::LakeToml))
    } else if explicit_profile.is_none() && from_env.0.is_some() && from_env.1.is_some() {
        let (Some(key), Some(secret)) = from_env else { unreachable!() };
        (Some((key, secret, env("AWS_SESSION_TOKEN"))), Some(Source::Env))
    } else if let Some((key, secret, token, file)) = profile.keys() {
        let source = Source::Profile { name: profile_name.clone(), file, from_toml: explicit_profile.is_some() };
        (Some((key, secret, token)), Some(source))
    } else {
        (None, None)
    };
    if let Some((key, secret, token)) = keys {
        out.insert(ACCESS_KEY.into(), key);
        out.insert(SECRET_KEY.into(), secret);
        match token {
            Some(t) => out.insert(SESSION_TOKEN.into(), t),
            None => out.remove(SESSION_TOKEN),
        };
        // The keys are settled here: iceberg's FileIO must not look for others.
        out.insert(DISABLE_CONFIG_LOAD.into(), "true".into());
    }
    if let Some(source) = &source {
        out.insert(CREDENTIALS_FROM.into(), source.encode());
    }
    let region = set(REGION)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| profile.get("region"))
        .unwrap_or_else(|| "us-east-1".into());
    out.insert(REGION.into(), region);
    let endpoint = set(ENDPOINT)
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| profile.get("endpoint_url"));
    if let Some(endpoint) = endpoint {
        out.insert(ENDPOINT.into(), endpoint.trim_end_matches('/').to_string());
        // S3-compatible servers (MinIO, moto, Ceph) address buckets by path.
        out.entry(PATH_STYLE.into()).or_insert_with(|| "true".into());
    }
    Ok(out)
}

impl Source {
    /// As stored under [`CREDENTIALS_FROM`]: `lake.toml`, `env`, `profile\tNAME\tFILE\ttoml|env`.
    fn encode(&self) -> String {
        match self {
            Source::LakeToml => "lake.toml".into(),
            Source::Env => "env".into(),
            Source::Profile { name, file, from_toml } => {
                format!("profile\t{name}\t{}\t{}", file.display(), if *from_toml { "toml" } else { "env" })
            }
        }
    }
}

/// What to check when the object store refuses the credentials in effect.
pub fn credentials_hint(props: &HashMap<String, String>) -> String {
    let from = props.get(CREDENTIALS_FROM).map(String::as_str).unwrap_or("");
    match from.split('\t').collect::<Vec<_>>().as_slice() {
        ["lake.toml"] => format!(
            "check [storage] \"{ACCESS_KEY}\" and \"{SECRET_KEY}\" in lake.toml (they win over AWS_* variables and profiles)"
        ),
        ["env"] => "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment".into(),
        ["profile", name, file, chosen] => {
            let by = if *chosen == "toml" { format!("[storage] \"{PROFILE}\"") } else { "AWS_PROFILE".into() };
            format!("check aws_access_key_id and aws_secret_access_key of profile [{name}] in {file} (chosen by {by})")
        }
        _ => format!(
            "no credentials were found: set [storage] \"{ACCESS_KEY}\" and \"{SECRET_KEY}\", AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile"
        ),
    }
}

/// One profile of the shared credentials and config files.
struct Profile {
    credentials_file: PathBuf,
    config_file: PathBuf,
    credentials: HashMap<String, String>,
    config: HashMap<String, String>,
}

impl Profile {
    fn load(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Profile> {
        let home = env("HOME").map(PathBuf::from).unwrap_or_default();
        let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".aws/credentials"));
        let config_file = env("AWS_CONFIG_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/config"));
        let credentials = section(&credentials_file, name)?;
        let config_name = if name == "default" { name.to_string() } else { format!("profile {name}") };
        let mut config = section(&config_file, &config_name)?;
        if config.is_empty() && name != "default" {
            config = section(&config_file, name)?;
        }
        Ok(Profile { credentials_file, config_file, credentials, config })
    }

    fn is_empty(&self) -> bool {
        self.credentials.is_empty() && self.config.is_empty()
    }

    /// A key of the profile, the credentials file first.
    fn get(&self, key: &str) -> Option<String> {
        self.credentials.get(key).or_else(|| self.config.get(key)).cloned()
    }

    /// Static keys with the file that held them.
    fn keys(&self) -> Option<(String, String, Option<String>, PathBuf)> {
        for (values, file) in [(&self.credentials, &self.credentials_file), (&self.config, &self.config_file)] {
            if let (Some(k), Some(s)) = (values.get("aws_access_key_id"), values.get("aws_secret_access_key")) {
                return Some((k.clone(), s.clone(), values.get("aws_session_token").cloned(), file.clone()));
            }
        }
        None
    }
}

/// The `key = value` lines of section `[name]` of an INI file; empty when the file or the
/// section is missing. Indented lines (nested settings such as `s3 =` blocks) are skipped.
fn section(path: &Path, name: &str) -> Result<HashMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => bail!("cannot read the AWS profile file {}: {e}", path.display()),
    };
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if !inside || line.starts_with(char::is_whitespace) {
            continue;
        }
        if let Some((k, v)) = trimmed.split_once('=') {
            let v = v.trim();
            if !v.is_empty() {
                out.insert(k.trim().to_ascii_lowercase(), v.to_string());
            }
        }
    }
    Ok(out)
}
