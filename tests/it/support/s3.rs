//! moto's S3 API server (pip `moto[server]`, installed by `.ci/run`) on a loopback port,
//! stopped when dropped; optionally enforcing authentication (an IAM user's key pair).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// moto's server with its signature check canonicalizing the query string as AWS does
/// (SigV4: every query name and value URI-encoded, `/` as `%2F`). moto 5 hashes the query as
/// it arrived, so a client that sends `prefix=wh/` and signs `prefix=wh%2F` (OpenDAL, which AWS
/// and MinIO accept) would be refused with the right keys.
const AUTH_SERVER: &str = "
import sys, urllib.parse
from moto.iam import access_control
original = access_control.IAMRequestBase.__init__
def canonical(s):
    return urllib.parse.quote(urllib.parse.unquote(s), safe='-_.~')
def init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    path, sep, query = self._path.partition('?')
    if sep:
        pairs = [p.partition('=') for p in query.split('&')]
        self._path = path + '?' + '&'.join(canonical(k) + eq + canonical(v) for k, eq, v in pairs)
access_control.IAMRequestBase.__init__ = init
from moto.server import main
main(['-p', sys.argv[1]])
";

pub struct Moto {
    child: std::process::Child,
    pub port: u16,
    /// The key pair boto3 uses (any pair when moto does not check them).
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Moto {
    /// Start on `port` (0: a free one) and wait until it accepts connections.
    pub fn start(port: u16) -> Moto {
        Self::spawn(port, None)
    }

    /// Start a moto that checks every request's signature, with an IAM user allowed
    /// everything; its key pair is in `access_key_id` / `secret_access_key`. moto serves the
    /// first three requests unchecked (`INITIAL_NO_AUTH_ACTION_COUNT`): they create the user,
    /// its policy and its access key.
    pub fn start_with_auth() -> Moto {
        let mut moto = Self::spawn(0, Some(3));
        let out = moto.boto_output(
            "import json\n\
             iam = boto3.client('iam', endpoint_url=s3.meta.endpoint_url, region_name='us-east-1', \
             aws_access_key_id='k', aws_secret_access_key='s')\n\
             iam.create_user(UserName='lake')\n\
             iam.put_user_policy(UserName='lake', PolicyName='all', PolicyDocument=json.dumps(\
             {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]}))\n\
             key = iam.create_access_key(UserName='lake')['AccessKey']\n\
             print(key['AccessKeyId'], key['SecretAccessKey'])",
        );
        let mut words = out.split_whitespace();
        moto.access_key_id = words.next().expect("access key id").to_string();
        moto.secret_access_key = words.next().expect("secret access key").to_string();
        // Enforced from now on: a wrong key is refused.
        let check = Command::new("python3")
            .args(["-c", &moto.script("s3.list_buckets()").replace(&moto.secret_access_key, "wrong-secret")])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!check.success(), "moto does not enforce authentication");
        moto
    }

    fn spawn(port: u16, no_auth_actions: Option<u32>) -> Moto {
        let port = if port == 0 { free_port() } else { port };
        let mut cmd = Command::new("python3");
        match no_auth_actions {
            None => cmd.args(["-m", "moto.server", "-p", &port.to_string()]),
            Some(n) => cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string()).args(["-c", AUTH_SERVER, &port.to_string()]),
        };
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("python3 -m moto.server (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start (pip install 'moto[server]')");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port, access_key_id: "k".into(), secret_access_key: "s".into() }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, code: &str) -> String {
        format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{}', aws_secret_access_key='{}')\n{code}",
            self.endpoint(),
            self.access_key_id,
            self.secret_access_key
        )
    }

    /// Run boto3 `code` with a client `s3` for this server.
    pub fn boto(&self, code: &str) {
        assert!(Command::new("python3").args(["-c", &self.script(code)]).status().unwrap().success(), "boto3: {code}");
    }

    /// Like [`Moto::boto`], returning what `code` printed.
    pub fn boto_output(&self, code: &str) -> String {
        let out = Command::new("python3").args(["-c", &self.script(code)]).output().unwrap();
        assert!(out.status.success(), "boto3: {code}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.boto(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }

    /// Every key in `bucket` under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.boto_output(&format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{bucket}', Prefix='{prefix}'):\n    \
             for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }

    /// Write a small object.
    pub fn put(&self, bucket: &str, key: &str) {
        self.boto(&format!("s3.put_object(Bucket='{bucket}', Key='{key}', Body=b'not referenced')"));
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
