//! moto's S3 API server (pip `moto[server]`, installed by `.ci/run`) on a loopback port,
//! stopped when dropped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Moto {
    /// Start on `port` (0: a free one) and wait until it accepts connections.
    pub fn start(port: u16) -> Moto {
        let port = if port == 0 { free_port() } else { port };
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start (pip install 'moto[server]')");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run boto3 `code` with a client `s3` for this server.
    pub fn boto(&self, code: &str) {
        assert!(Command::new("python3").args(["-c", &self.script(code)]).status().unwrap().success(), "boto3: {code}");
    }

    fn script(&self, code: &str) -> String {
        format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='k', aws_secret_access_key='s')\n{code}",
            self.endpoint()
        )
    }

    /// Whether `bucket` holds an object named `key`.
    pub fn object_exists(&self, bucket: &str, key: &str) -> bool {
        let code = format!(
            "listed = s3.list_objects_v2(Bucket={bucket:?}, Prefix={key:?}).get('Contents', [])\n\
             print(any(o['Key'] == {key:?} for o in listed))"
        );
        let out = Command::new("python3").args(["-c", &self.script(&code)]).output().unwrap();
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim() == "True"
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.boto(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
