//! A real object store for the S3 tests: a 3-node Garage cluster on loopback with replication
//! factor 3, started from a binary built once outside the clone (`make garage`; Garage is AGPL,
//! so it is an outside test server only, never a dependency). Each cluster lives in its own
//! temporary folder and is killed on drop.

use crate::util::free_port;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `make garage` puts the binary, unless `AMPS_GARAGE` names another.
pub fn garage_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AMPS_GARAGE") {
        let path = PathBuf::from(path);
        return path.exists().then_some(path);
    }
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".cache/amps-garage/bin/garage");
    path.exists().then_some(path)
}

pub const REGION: &str = "garage";
pub const BUCKET: &str = "amps";
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// One Garage node.
struct Node {
    config: PathBuf,
    child: Option<Child>,
    s3_port: u16,
}

/// A running 3-node cluster.
pub struct Garage {
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Garage {
    /// Start a cluster, or `None` (with a named skip) when Garage is not built.
    pub fn start() -> Option<Garage> {
        let Some(binary) = garage_binary() else {
            let why = "Garage is not built (make garage, about 12 minutes): S3 tests not run";
            if std::env::var_os("AMPS_REQUIRE_GARAGE").is_some() {
                panic!("{why}");
            }
            crate::util::skip(why);
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let secret: String = "5e".repeat(32);
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let node = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node).unwrap();
            let (s3, rpc, admin) = (free_port(), free_port(), free_port());
            let config = node.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{node}/meta\"\ndata_dir = \"{node}/data\"\ndb_engine = \"lmdb\"\nreplication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n[s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\nroot_domain = \".s3.garage.localhost\"\n\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{secret}\"\n",
                    node = node.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                config,
                child: None,
                s3_port: s3,
            });
        }
        let mut garage = Garage { binary, dir, nodes };
        for i in 0..3 {
            garage.start_node(i);
        }
        garage.form_cluster();
        Some(garage)
    }

    fn start_node(&mut self, i: usize) {
        let log =
            std::fs::File::create(self.dir.path().join(format!("node{}.log", i + 1))).unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    /// `garage -c <node i> args...`, retried until it succeeds (the node may still start).
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = Command::new(&self.binary)
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn form_cluster(&self) {
        let ids: Vec<String> = (0..3)
            .map(|i| self.cli(i, &["node", "id", "-q"]).trim().to_string())
            .collect();
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id]);
        }
        // A node restarted later finds the others at once (peers are saved only every 60 s).
        let peers: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.config).unwrap();
            let text = format!("bootstrap_peers = [{}]\n{text}", peers.join(", "));
            std::fs::write(&node.config, text).unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            let zone = format!("z{i}");
            self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", short]);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
        self.cli(0, &["bucket", "create", BUCKET]);
        self.cli(0, &["key", "import", "-n", "amps", "--yes", KEY_ID, SECRET]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
            ],
        );
        // Ready when a signed listing answers.
        let store = self.client("ready/");
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.list("").is_err() {
            assert!(
                Instant::now() < deadline,
                "the Garage cluster never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// An object store client of ours on `prefix` (through node 1).
    pub fn client(&self, prefix: &str) -> amps::s3::ObjectStore {
        let location = amps::s3::S3Location {
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            endpoint: self.endpoint(0),
            region: REGION.into(),
            path_style: true,
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
            session_token: None,
            redirect_downloads: false,
        };
        amps::s3::ObjectStore::new(&location).unwrap()
    }

    /// Kill node `i` (kill -9).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `i` again.
    pub fn restart_node(&mut self, i: usize) {
        self.start_node(i);
    }

    /// The secret access key in a file (for `--s3-secret-access-key-file`).
    pub fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("secret");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(SECRET.as_bytes()).unwrap();
        path
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}
