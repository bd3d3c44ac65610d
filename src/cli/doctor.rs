//! `lake doctor`: check the catalog and the warehouse of `lake.toml` and print one line per
//! check (`--log-format json`: one object per check). The checks live in
//! [`crate::lakehouse::doctor`]; this prints them with secrets scrubbed and picks the exit
//! code: 0 when nothing failed (a warning is not a failure), 3 when a check failed, 2 for a
//! bad `lake.toml`.

use super::{CliResult, EXIT_ENVIRONMENT, EXIT_OK, GlobalArgs, LogFormat};
use crate::lakehouse::doctor::{self, Status};
use crate::project::secrets::scrub;

pub(super) async fn doctor(g: &GlobalArgs) -> CliResult {
    // Only lake.toml: a model that does not parse is no reason not to check the lakehouse.
    let config = super::project_cmds::load_config(g)?;
    super::remember_catalog(&config.catalog);
    let checks = doctor::run(&config.catalog).await;
    for check in &checks {
        let message = scrub(&check.message);
        match g.log_format {
            LogFormat::Json => println!(
                "{}",
                serde_json::json!({"event": "doctor_check", "check": check.check, "status": check.status, "message": message})
            ),
            LogFormat::Text => {
                let status = match check.status {
                    Status::Ok => "ok",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                    Status::Skipped => "skipped",
                };
                println!("{:<16} {status:<7} {message}", check.check);
            }
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) { EXIT_ENVIRONMENT } else { EXIT_OK })
}
