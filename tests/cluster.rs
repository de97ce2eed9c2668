//! keyledger scaled out on this machine (`keyledger cluster`): three nats-servers as one
//! JetStream cluster with every stream replicated three times, a PostgreSQL read
//! model, two command services, two projectors (one on standby) and two API replicas,
//! each its own process. A write through one API replica is read through the other; a
//! stream leader, a command service, the active projector, an API replica or
//! PostgreSQL killed with SIGKILL under a write load loses no acknowledged write and
//! duplicates none, the read model equals a fresh rebuild (on SQLite), and the log
//! verifies afterwards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::support::read_model;

const KEYLEDGER: &str = env!("CARGO_BIN_EXE_keyledger");

/// One cluster at a time: each is three nats-servers, PostgreSQL and seven components,
/// and two at once beside the rest of the suite starved each other on two cores.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `keyledger cluster`, stopped (SIGTERM, which stops every process it
/// started) when dropped.
struct Cluster {
    process: Child,
    data: PathBuf,
    /// Each node's name and process id, as printed.
    nodes: BTreeMap<String, u32>,
    /// The NATS URL of every node, with the keyledger service user's credentials.
    service_url: String,
    /// Each node's NATS URL alone, by node name, with the same credentials.
    node_urls: BTreeMap<String, String>,
    apis: Vec<String>,
    token: String,
    /// The read model's URL, when it is PostgreSQL.
    postgres: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        signal(self.process.id(), libc::SIGTERM);
        let _ = self.process.wait();
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(i32::try_from(pid).unwrap(), signal);
    }
}

/// Starts `keyledger cluster` on free ports with a `read_model` (`postgres` or
/// `sqlite`) and reads the addresses it prints.
fn start(data: &Path, read_model: &str) -> Cluster {
    let mut process = Command::new(KEYLEDGER)
        .args([
            "cluster",
            "--nats-port",
            "0",
            "--http-port",
            "0",
            "--read-model",
            read_model,
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !banner
        .iter()
        .any(|l: &String| l.starts_with("Stop with Ctrl-C"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => banner.push(line),
            Err(e) => panic!("keyledger cluster printed no banner ({e}); got {banner:?}"),
        }
    }
    let word = |line: &str, n: usize| line.split_whitespace().nth(n).unwrap().to_owned();
    let mut nodes = BTreeMap::new();
    let mut ports = BTreeMap::new();
    let mut apis = Vec::new();
    let mut token = String::new();
    let mut postgres = None;
    for line in &banner {
        let line = line.trim();
        if line.starts_with("nats n") {
            // nats n1      nats://127.0.0.1:PORT  (pid PID; log …)
            let pid = word(line, 4).trim_end_matches(';').parse().unwrap();
            nodes.insert(word(line, 1), pid);
            let port = word(line, 2).rsplit(':').next().unwrap().to_owned();
            ports.insert(word(line, 1), port);
        } else if line.starts_with("API ") {
            apis.push(word(line, 2));
        } else if line.starts_with("postgres ") {
            postgres = Some(word(line, 1));
        } else if let Some(t) = line.strip_prefix("export KEYLEDGER_TOKEN=") {
            token = t.to_owned();
        }
    }
    assert_eq!((nodes.len(), apis.len()), (3, 2), "{banner:#?}");
    let password = std::fs::read_to_string(data.join("nats-service.key")).unwrap();
    let node_urls: BTreeMap<String, String> = ports
        .into_iter()
        .map(|(name, p)| {
            let url = format!("nats://keyledger:{}@127.0.0.1:{p}", password.trim());
            (name, url)
        })
        .collect();
    let service_url = node_urls.values().cloned().collect::<Vec<_>>().join(",");
    Cluster {
        process,
        data: data.to_owned(),
        nodes,
        service_url,
        node_urls,
        apis,
        token,
        postgres,
    }
}

impl Cluster {
    async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(
            infra::nats::connect(&self.service_url, "cluster-test")
                .await
                .unwrap(),
        )
    }

    /// The node that leads the event stream.
    async fn stream_leader(&self, js: &async_nats::jetstream::Context) -> String {
        let stream = js.get_stream("KEYLEDGER").await.unwrap();
        let cluster = stream.cached_info().cluster.clone().unwrap();
        cluster.leader.unwrap()
    }

    /// The JSON at `url`, read as the development user once the read model shows
    /// sequence `seq`.
    async fn read_json(&self, url: &str, seq: u64) -> serde_json::Value {
        crate::support::http()
            .get(url)
            .bearer_auth(&self.token)
            .header("X-Keyledger-Min-Seq", seq.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The processes of `keyledger serve <component>` running for this cluster.
    fn component_pids(&self, component: &str) -> Vec<u32> {
        self.pids_where(|args| {
            args.windows(2)
                .any(|w| w[0] == "serve" && w[1] == component)
        })
    }

    /// The process id of the nats-server of node `name` (which changes when the
    /// cluster starts a killed node again).
    fn node_pid(&self, name: &str) -> u32 {
        let dir = format!("/nats/{name}/");
        let pids = self.pids_where(|args| args.iter().any(|a| a.contains(&dir)));
        assert_eq!(pids.len(), 1, "node {name}: {pids:?}");
        pids[0]
    }

    /// The process id of the PostgreSQL server (the postmaster, which changes when the
    /// cluster starts a killed one again): the `postgres` process listening on the
    /// read model's port.
    fn postgres_pid(&self) -> u32 {
        let url = self.postgres.as_deref().expect("a PostgreSQL read model");
        let port = url.rsplit("port=").next().unwrap();
        let pids: Vec<u32> = processes()
            .filter(|(_, args)| {
                args[0].ends_with("/postgres")
                    && args.windows(2).any(|w| w[0] == "-p" && w[1] == port)
            })
            .map(|(pid, _)| pid)
            .collect();
        // A backend forked a moment ago shows its postmaster's command line until it
        // renames itself: the postmaster is the one whose parent is not among them.
        let postmasters: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|pid| parent_of(*pid).is_none_or(|parent| !pids.contains(&parent)))
            .collect();
        assert_eq!(postmasters.len(), 1, "postgres on port {port}: {pids:?}");
        postmasters[0]
    }

    /// The projector holding the PostgreSQL read model's advisory lock, by the
    /// process id its session is named after.
    async fn lock_holder(&self) -> Option<u32> {
        self.lock_sessions("l.granted").await.first().copied()
    }

    /// The projectors waiting for the read model's advisory lock, by process id.
    async fn lock_waiters(&self) -> Vec<u32> {
        self.lock_sessions("NOT l.granted").await
    }

    /// The application names of the sessions on the read model's advisory lock that
    /// pass `filter` (SQL on `pg_locks l`), as projector process ids.
    async fn lock_sessions(&self, filter: &str) -> Vec<u32> {
        let url = self.postgres.as_deref().expect("a PostgreSQL read model");
        let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(url).await else {
            return Vec::new();
        };
        let key = projections::writer::POSTGRES_LOCK;
        let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT a.application_name::text FROM pg_locks l JOIN pg_stat_activity a \
             ON a.pid = l.pid WHERE l.locktype = 'advisory' AND {filter} \
             AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1"
        )))
        .bind(key >> 32)
        .bind(key & 0xffff_ffff)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        names
            .iter()
            .filter_map(|n| {
                n.strip_prefix(projections::writer::LOCK_HOLDER_PREFIX)?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Ends the PostgreSQL sessions of the projector with process id `pid`, as an
    /// operator's `pg_terminate_backend` does.
    async fn end_session(&self, pid: u32) {
        let url = self.postgres.as_deref().expect("a PostgreSQL read model");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(format!("{}{pid}", projections::writer::LOCK_HOLDER_PREFIX))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(ended, [true], "projector {pid}'s session");
    }

    /// The processes of this cluster whose arguments pass `test`.
    fn pids_where(&self, test: impl Fn(&[String]) -> bool) -> Vec<u32> {
        let data = self.data.to_string_lossy().into_owned();
        processes()
            .filter(|(_, args)| test(args) && args.iter().any(|a| a.contains(&data)))
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Every process of this machine, with its arguments.
/// The parent of process `pid`, from `/proc/<pid>/stat` (`None`: it is gone).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses (which may hold spaces): state, parent.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn processes() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (pid, args)
        })
}

/// Creates a secret through `api`, sending the same Idempotency-Key again while the
/// answer is "unavailable" or the connection fails (as a client rides out a failover),
/// until a 201 or the deadline. Returns the id and the sequence it answered.
async fn create(http: &reqwest::Client, api: &str, token: &str, key: &str) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sent = http
            .post(format!("{api}/v1/secrets"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .timeout(Duration::from_secs(30))
            .json(&json!({"name": key, "payload": format!("payload of {key}"), "payload_content_type": "text/plain"}))
            .send()
            .await;
        let status = match sent {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                let seq = r.headers()["x-keyledger-seq"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let body: serde_json::Value = r.json().await.unwrap();
                return (crate::support::id_of(&body), seq);
            }
            // Its answer, for the message should the deadline pass: which part was
            // unavailable.
            Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 504 => {
                let status = r.status();
                format!("{status}: {}", r.text().await.unwrap_or_default())
            }
            Ok(r) => {
                let status = r.status();
                panic!(
                    "creating {key} answered {status}: {}",
                    r.text().await.unwrap()
                );
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "creating {key} kept failing ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes 80 secrets from 4 concurrent writers, alternating API replicas, and sends
/// SIGKILL to `victim` (a process id, found once 20 writes are acknowledged). Prints
/// the longest wait between two acknowledgements (the stall). Returns key → (id,
/// sequence) of every write, each acknowledged, and when the victim was killed.
async fn kill_under_load(
    cluster: &Cluster,
    prefix: &str,
    victim: impl FnOnce() -> u32,
) -> (BTreeMap<String, (String, u64)>, Instant) {
    fault_under_load(cluster, prefix, libc::SIGKILL, victim).await
}

/// As [`kill_under_load`], with any signal: SIGSTOP hangs the victim (it keeps its
/// connections open and answers nothing) until the caller sends SIGCONT.
async fn fault_under_load(
    cluster: &Cluster,
    prefix: &str,
    fault: i32,
    victim: impl FnOnce() -> u32,
) -> (BTreeMap<String, (String, u64)>, Instant) {
    const WRITERS: usize = 4;
    const COUNT: usize = 80;
    let acked = Arc::new(AtomicUsize::new(0));
    let http = crate::support::http();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, token, acked) = (http.clone(), cluster.token.clone(), acked.clone());
            let apis = cluster.apis.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for i in (w..COUNT).step_by(WRITERS) {
                    let key = format!("{prefix}-{i}");
                    let created = create(&http, &apis[i % 2], &token, &key).await;
                    acked.fetch_add(1, Ordering::SeqCst);
                    done.push((key, created, Instant::now()));
                }
                done
            })
        })
        .collect();
    crate::support::eventually("20 acknowledged writes", Duration::from_secs(60), || {
        let acked = acked.clone();
        async move { (acked.load(Ordering::SeqCst) >= 20).then_some(()) }
    })
    .await;
    let pid = victim();
    signal(pid, fault);
    let killed_at = Instant::now();
    if fault == libc::SIGKILL {
        crate::support::eventually(
            "the killed process to be gone",
            Duration::from_secs(10),
            || async move { (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()) },
        )
        .await;
    }
    let mut all = BTreeMap::new();
    let mut times = vec![killed_at];
    for task in tasks {
        for (key, created, at) in task.await.unwrap() {
            all.insert(key, created);
            times.push(at);
        }
    }
    times.sort();
    let stall = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!(
        "{prefix}: {COUNT} writes acknowledged; longest wait between two acknowledgements {stall:?}"
    );
    assert_eq!(all.len(), COUNT);
    (all, killed_at)
}

/// A subscription held on one node only, by a client that never moves to another (as a
/// component's would, once its pings to a hung node go unanswered), asked from
/// another node.
struct Probe {
    asker: async_nats::Client,
    responder: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

impl Probe {
    const SUBJECT: &str = "keyledger-test.route-probe";

    /// Subscribes on node `on` and waits until another node routes requests to it.
    async fn on(cluster: &Cluster, on: &str) -> Self {
        let held = Self::connect(cluster, on).await;
        let mut requests = held.subscribe(Self::SUBJECT).await.unwrap();
        held.flush().await.unwrap();
        let responder = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = held.publish(reply, "here".into()).await;
                }
            }
        });
        let other = cluster.node_urls.keys().find(|n| *n != on).unwrap();
        let probe = Self {
            asker: Self::connect(cluster, other).await,
            responder,
        };
        crate::support::eventually(
            "the probe's subscription to reach the other nodes",
            Duration::from_secs(10),
            || async { matches!(probe.ask().await, Some(Ok(_))).then_some(()) },
        )
        .await;
        probe
    }

    /// A client of node `name` alone: it never learns of the others.
    async fn connect(cluster: &Cluster, name: &str) -> async_nats::Client {
        let password = std::fs::read_to_string(cluster.data.join("nats-service.key")).unwrap();
        let (_, address) = cluster.node_urls[name].rsplit_once('@').unwrap();
        async_nats::ConnectOptions::with_user_and_password(
            "keyledger".into(),
            password.trim().into(),
        )
        .ignore_discovered_servers()
        .connect(format!("nats://{address}"))
        .await
        .unwrap()
    }

    /// The answer to one request, `None` when there is none within a second.
    async fn ask(&self) -> Option<Result<async_nats::Message, async_nats::RequestError>> {
        tokio::time::timeout(
            Duration::from_secs(1),
            self.asker.request(Self::SUBJECT, "where".into()),
        )
        .await
        .ok()
    }

    /// Asks until the answer is "no responders" (the other nodes dropped the
    /// subscription), and returns when that was.
    fn until_dropped(self) -> tokio::task::JoinHandle<Instant> {
        tokio::spawn(async move {
            loop {
                if let Some(Err(e)) = self.ask().await
                    && e.kind() == async_nats::RequestErrorKind::NoResponders
                {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}

/// Every acknowledged write reads back through the API replica that did not take
/// it, at the sequence it answered, exactly once by its name. A payload read answered
/// 503 because its access record could not be stored (while a stream elects a leader
/// after a fault) is sent again, as its "retry shortly" asks, for up to 30 s; any
/// other answer (a read model behind the write's sequence included) fails.
async fn all_readable(cluster: &Cluster, written: &BTreeMap<String, (String, u64)>) {
    let http = crate::support::http();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retries = 0;
    for (i, (key, (id, seq))) in written.iter().enumerate() {
        let api = &cluster.apis[(i + 1) % 2];
        let (status, text) = loop {
            let payload = http
                .get(format!("{api}/v1/secrets/{id}/payload"))
                .bearer_auth(&cluster.token)
                .header("X-Keyledger-Min-Seq", seq.to_string())
                .send()
                .await
                .unwrap();
            let status = payload.status();
            let text = payload.text().await.unwrap();
            if status != 503 || !text.contains("access record") || Instant::now() >= deadline {
                break (status, text);
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            (status.as_u16(), text.as_str()),
            (200, format!("payload of {key}").as_str()),
            "{key}"
        );
        let named = cluster
            .read_json(&format!("{api}/v1/secrets?name={key}"), *seq)
            .await;
        assert_eq!(named["total"], 1, "{key} was created once: {named}");
    }
    if retries > 0 {
        eprintln!("{retries} payload reads answered 503 and were sent again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_no_acknowledged_write_when_any_process_dies() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), "postgres");
    let js = cluster.jetstream().await;

    // No component's command line carries a password: every local user can read it.
    let password = std::fs::read_to_string(dir.path().join("nats-service.key")).unwrap();
    let callout = std::fs::read_to_string(dir.path().join("nats-auth.key")).unwrap();
    for component in ["nats-auth", "commands", "projector", "api"] {
        for pid in cluster.component_pids(component) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(password.trim()) && !cmdline.contains(callout.trim()),
                "{component}: {cmdline}"
            );
        }
    }

    // Every stream and the key bucket are replicated on all three nodes.
    for stream in ["KEYLEDGER", "KV_KEYLEDGER_KEYS", "KEYLEDGER_CHECKPOINTS"] {
        let info = crate::support::eventually(
            "the streams to be created",
            Duration::from_secs(30),
            || {
                let js = js.clone();
                async move { Some(js.get_stream(stream).await.ok()?.cached_info().clone()) }
            },
        )
        .await;
        assert_eq!(info.config.num_replicas, 3, "{stream}");
    }

    // The stream leader, killed once 20 of 80 writes are acknowledged: another node
    // takes over, and clients that got no answer send their writes again.
    let leader = cluster.stream_leader(&js).await;
    let (written, _) = kill_under_load(&cluster, "leader", || cluster.nodes[&leader]).await;
    all_readable(&cluster, &written).await;

    // The cluster starts the killed node again, and it catches up with the others.
    crate::support::eventually(
        "the killed node to rejoin the stream's replicas",
        Duration::from_secs(60),
        || {
            let js = js.clone();
            let leader = leader.clone();
            async move {
                let stream = js.get_stream("KEYLEDGER").await.ok()?;
                let cluster = stream.cached_info().cluster.clone()?;
                // Back as a current replica, or elected leader again; and every
                // replica current.
                let back = cluster.leader.as_deref() == Some(leader.as_str())
                    || cluster.replicas.iter().any(|r| r.name == leader);
                (back && cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current))
                    .then_some(())
            }
        },
    )
    .await;

    // A follower hung (SIGSTOP: its connections stay open and nothing answers) under
    // load: the other two nodes keep a quorum, components connected to it move to
    // another node once their pings go unanswered, and after SIGCONT it catches up.
    let leader = cluster.stream_leader(&js).await;
    let follower = cluster
        .nodes
        .keys()
        .find(|n| **n != leader)
        .unwrap()
        .clone();
    let hung = cluster.node_pid(&follower);
    let dropped = Probe::on(&cluster, &follower).await.until_dropped();
    let (written, hung_at) = fault_under_load(&cluster, "hung", libc::SIGSTOP, || hung).await;
    // The others close their routes to the hung node within seconds, and with them
    // its subscriptions: until then they route to it what those asked for (commands
    // for a command service that was connected there) and nothing answers. With
    // nats-server's default route pings that took 60 to 90 s, and a create sent
    // again for 90 s could still find a command service's subscription there.
    let within = Duration::from_secs(30);
    let dropped = tokio::time::timeout(within.saturating_sub(hung_at.elapsed()), dropped)
        .await
        .unwrap_or_else(|_| panic!("the others still route to the hung node {within:?} on"))
        .unwrap();
    assert!(
        dropped > hung_at,
        "the probe's subscription was dropped before the hang"
    );
    assert!(
        dropped - hung_at < within,
        "the others routed to the hung node for {:?}",
        dropped - hung_at
    );
    eprintln!(
        "hung: the others dropped its subscriptions {:?} after it hung",
        dropped - hung_at
    );
    signal(hung, libc::SIGCONT);
    all_readable(&cluster, &written).await;

    // A command service, the projector, an API replica: each killed under load and
    // started again by the cluster. A command service's requests go to the other one
    // (the API sends what got no answer again, with its command id); reads wait for
    // the restarted projector to catch up; a client of the killed API replica
    // retries there once it is back.
    for component in ["commands", "api"] {
        let pids = cluster.component_pids(component);
        assert_eq!(pids.len(), 2, "{component}: {pids:?}");
        let (written, _) = kill_under_load(&cluster, component, || pids[0]).await;
        all_readable(&cluster, &written).await;
    }
    // The projector that holds the read model's advisory lock is killed; PostgreSQL
    // ends its session, the standby's waiting session gets the lock, and it goes on
    // from the checkpoint.
    let pids = cluster.component_pids("projector");
    assert_eq!(pids.len(), 2, "projector: {pids:?}");
    let active = cluster
        .lock_holder()
        .await
        .expect("a projector holds the read model's lock");
    assert!(pids.contains(&active), "{active} is not one of {pids:?}");
    let standby = *pids.iter().find(|p| **p != active).unwrap();
    let cluster = Arc::new(cluster);
    let handed_over = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            crate::support::eventually(
                "the standby projector to take the lock",
                Duration::from_secs(30),
                || {
                    let cluster = cluster.clone();
                    async move { (cluster.lock_holder().await == Some(standby)).then(Instant::now) }
                },
            )
            .await
        })
    };
    let (written, killed_at) = kill_under_load(&cluster, "projector", || active).await;
    eprintln!(
        "projector: the standby held the lock {:?} after the kill",
        handed_over.await.unwrap() - killed_at
    );
    all_readable(&cluster, &written).await;

    // PostgreSQL killed under load: the cluster starts it again, and its crash
    // recovery keeps every committed batch; the projector reconnects (taking the lock
    // again, or leaving it to the standby) and the API replicas' pools reconnect.
    let (written, _) = kill_under_load(&cluster, "postgres", || cluster.postgres_pid()).await;
    all_readable(&cluster, &written).await;

    // PostgreSQL ends the active projector's session (an operator's
    // pg_terminate_backend, an idle timeout): the standby takes the lock, and the
    // projector that lost it stands by in its place, in the same process, so the
    // read model keeps a standby however often this happens.
    for round in 0..2 {
        let pids = cluster.component_pids("projector");
        let active = crate::support::eventually(
            "a projector to hold the read model's lock",
            Duration::from_secs(30),
            || cluster.lock_holder(),
        )
        .await;
        let standby = *pids.iter().find(|p| **p != active).unwrap();
        cluster.end_session(active).await;
        let http = crate::support::http();
        let mut written = BTreeMap::new();
        for i in 0..10 {
            let key = format!("session-{round}-{i}");
            written.insert(
                key.clone(),
                create(&http, &cluster.apis[i % 2], &cluster.token, &key).await,
            );
        }
        crate::support::eventually(
            "the standby to take the lock, and the other to stand by",
            Duration::from_secs(30),
            || async {
                (cluster.lock_holder().await == Some(standby)
                    && cluster.lock_waiters().await == [active])
                .then_some(())
            },
        )
        .await;
        assert_eq!(
            cluster.component_pids("projector"),
            pids,
            "no projector exited"
        );
        all_readable(&cluster, &written).await;
    }

    // Both command services race on one secret: 40 metadata keys added at once
    // through both API replicas. None is lost, and the chain check below finds no
    // version gap.
    let (id, _) = written.values().next().unwrap().clone();
    let http = crate::support::http();
    let adds = (0..40).map(|i| {
        let request = http
            .post(format!("{}/v1/secrets/{id}/metadata", cluster.apis[i % 2]))
            .bearer_auth(&cluster.token)
            .json(&json!({"key": format!("k{i}"), "value": "v"}));
        async move {
            let added = request.send().await.unwrap();
            let status = added.status();
            assert_eq!(status, 201, "{}", added.text().await.unwrap());
            added.headers()["x-keyledger-seq"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    });
    let last = futures::future::join_all(adds)
        .await
        .into_iter()
        .max()
        .unwrap();
    let metadata = cluster
        .read_json(
            &format!("{}/v1/secrets/{id}/metadata", cluster.apis[0]),
            last,
        )
        .await;
    assert_eq!(
        metadata["metadata"].as_object().unwrap().len(),
        40,
        "{metadata}"
    );

    // The read model the projector kept through its kill equals a fresh rebuild.
    let last = js
        .get_stream("KEYLEDGER")
        .await
        .unwrap()
        .cached_info()
        .state
        .last_sequence;
    let live = projections::db::open(cluster.postgres.as_deref().unwrap(), 1)
        .await
        .unwrap();
    crate::support::eventually("the projector to catch up", Duration::from_secs(30), || {
        let live = live.clone();
        async move { (read_model::checkpoint_of(&live).await >= last).then_some(()) }
    })
    .await;
    let fresh = dir.path().join("fresh.sqlite");
    let rebuilt = std::process::Command::new(KEYLEDGER)
        .args(["projections", "rebuild", "--nats-url", &cluster.service_url])
        .args(["--replicas", "3", "--data-dir"])
        .arg(dir.path())
        .arg("--database")
        .arg(projections::db::sqlite_url(&fresh))
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    // The live read model is PostgreSQL's, the rebuild SQLite's: they fold the log
    // the same.
    let rows = read_model::dump_of(&live).await;
    assert!(rows.len() > 400, "the read model holds every secret");
    assert_eq!(
        rows,
        read_model::dump(&read_model::open(&fresh).await).await
    );

    // The log verifies across the failovers: every commit, chain and authenticator,
    // and the checkpoints both command services signed.
    let auditor = std::fs::read_to_string(dir.path().join("nats-auditor.key")).unwrap();
    let auditor_url = cluster
        .service_url
        .split(',')
        .map(|u| {
            let port = u.rsplit(':').next().unwrap();
            format!("nats://auditor:{}@127.0.0.1:{port}", auditor.trim())
        })
        .collect::<Vec<_>>()
        .join(",");
    let verify = crate::support::audit(crate::support::args(&[
        "verify",
        "--nats-url",
        &auditor_url,
        "--commit-key-file",
        dir.path().join("commit.key").to_str().unwrap(),
        "--public-key",
        dir.path().join("checkpoint.pub").to_str().unwrap(),
    ]))
    .await;
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains("every authenticator"), "{out}");
    // How many checkpoints were signed depends on the failovers' timing: "1 signed
    // checkpoint matches the log" or "N signed checkpoints match the log".
    assert!(
        out.lines().any(|l| l.starts_with("ok: ")
            && l.contains("signed checkpoint")
            && l.contains("the log")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secrets_key_is_erased_on_every_node() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // The key store is NATS's alone: SQLite keeps the read model out of the way.
    let cluster = start(dir.path(), "sqlite");
    let http = crate::support::http();
    let (id, _) = create(&http, &cluster.apis[0], &cluster.token, "shred-canary").await;

    let js = cluster.jetstream().await;
    let bucket = js.get_key_value("KEYLEDGER_KEYS").await.unwrap();
    let store = infra::keystore::KeyStore::new(bucket.clone());
    let project = domain::ids::ProjectId::parse("dev").unwrap();
    let secret = domain::ids::SecretId::parse(&id).unwrap();
    let prefix = format!("dev.{id}.");
    let names: Vec<String> = bucket
        .keys()
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .filter(|k| k.starts_with(&prefix))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let key = domain::ids::KeyId::parse(names[0].rsplit('.').next().unwrap()).unwrap();
    let wrapped = store.get(&project, secret, key).await.unwrap().unwrap();
    let wanted = crate::support::wrapped_key_needles(&wrapped.wrapped);
    // The search bites: every node's copy of the key bucket holds the key, and so does
    // every node's Raft log of the bucket, which replicated the put.
    let raft_group = bucket.stream.clone().info().await.unwrap().cluster.clone();
    let raft_group = raft_group.and_then(|c| c.raft_group).unwrap();
    let before = crate::support::files_holding(dir.path(), &wanted);
    for node in ["n1", "n2", "n3"] {
        let bucket =
            format!("nats/{node}/jetstream/jetstream/KEYLEDGER/streams/KV_KEYLEDGER_KEYS/");
        let raft_log = format!("nats/{node}/jetstream/jetstream/$SYS/_js_/{raft_group}/");
        for place in [bucket, raft_log] {
            assert!(
                before.iter().any(|f| f.to_string_lossy().contains(&place)),
                "{node} holds the key under {place}: {before:#?}"
            );
        }
    }

    let deleted = http
        .delete(format!("{}/v1/secrets/{id}", cluster.apis[1]))
        .bearer_auth(&cluster.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    crate::support::key_destroyed(&store, &project, secret, key, Duration::from_secs(30)).await;
    // The erase reached every replica at once: no node's stream files hold the key.
    let after = crate::support::files_holding(dir.path(), &wanted);
    let outside_raft: Vec<_> = after
        .iter()
        .filter(|f| !f.to_string_lossy().contains("/_js_/"))
        .collect();
    assert!(
        outside_raft.is_empty(),
        "the wrapped key survives in {outside_raft:#?}"
    );
    // Each node's Raft log of the bucket keeps the put until nats-server snapshots the
    // bucket's stream and compacts the log: on its own timer, every 2 to 3 minutes. On
    // a bucket with nothing written since, the compaction drops the whole log (docs/operations.md,
    // "Crypto-shredding on a replicated key bucket"). Polled once a second: each look reads every file.
    let deadline = Instant::now() + RAFT_COMPACTION;
    loop {
        let left = crate::support::files_holding(&dir.path().join("nats"), &wanted);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{RAFT_COMPACTION:?} after the erase, the wrapped key survives in {left:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        crate::support::files_holding(dir.path(), &wanted).is_empty(),
        "the wrapped key survives outside NATS's files"
    );
}

/// How long after a key's erase nats-server has compacted each node's Raft log of the
/// key bucket: its stream monitor snapshots every 2 minutes plus up to 1 minute of
/// jitter (`monitorStream` in nats-server's `jetstream_cluster.go`), with room for a
/// loaded machine.
const RAFT_COMPACTION: Duration = Duration::from_secs(240);

/// A hung (SIGSTOP) process, continued (SIGCONT) when dropped: also when the test
/// fails while it hangs, so the cluster can still be stopped.
struct Hung(u32);

impl Drop for Hung {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// The key bucket's stream leader and one follower, by node name, once that follower
/// answers direct gets.
///
/// nats-server lets a follower answer direct gets only once it is current at a tick of
/// a 2-second timer that starts when it learns of a leader (`monitorStream` in
/// `jetstream_cluster.go`), and nothing a client can ask shows whether it has. A tick
/// that falls while the follower is hung or catching up is lost: on a fresh CI machine
/// the rounds below left it hung at every tick, and it never answered one. So the
/// follower is first seen current, then left running for two ticks.
async fn key_bucket_leader_and_follower(js: &async_nats::jetstream::Context) -> (String, String) {
    let mut stream = js.get_stream("KV_KEYLEDGER_KEYS").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cluster = stream.info().await.unwrap().cluster.clone().unwrap();
        if let (Some(leader), [follower, ..]) = (&cluster.leader, &cluster.replicas[..])
            && follower.current
        {
            tokio::time::sleep(DIRECT_ACCESS_TICK * 2).await;
            return (leader.clone(), follower.name.clone());
        }
        assert!(
            Instant::now() < deadline,
            "the key bucket has no leader with a current follower: {cluster:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often a follower that is not yet answering direct gets checks whether it is
/// current enough to start (`startDirectAccessMonitoring` in nats-server).
const DIRECT_ACCESS_TICK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_never_makes_a_key_look_destroyed() {
    let _one = ONE_CLUSTER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), "sqlite");
    let js = cluster.jetstream().await;
    let (leader, follower) = key_bucket_leader_and_follower(&js).await;
    let connect = |name: &str| {
        let url = cluster.node_urls[name].clone();
        async move {
            let client = infra::nats::connect(&url, "cluster-test").await.unwrap();
            let js = async_nats::jetstream::new(client.clone());
            (client, js.get_key_value("KEYLEDGER_KEYS").await.unwrap())
        }
    };
    // Keys are written through the leader's node and read through a connection to
    // the follower that will lag.
    let writer = infra::keystore::KeyStore::new(connect(&leader).await.1);
    let (lagging_client, lagging_bucket) = connect(&follower).await;
    let lagging = infra::keystore::KeyStore::new(lagging_bucket.clone());
    let project = domain::ids::ProjectId::parse("dev").unwrap();
    let wrapped = infra::envelope::WrappedKey {
        kek_id: "test".into(),
        nonce: vec![7; 12],
        wrapped: vec![9; 48],
        fingerprint: None,
        fingerprint_kek: None,
    };

    // The follower hangs (SIGSTOP) while 1,000 keys are written: two of three replicas
    // acknowledge each put. Right after SIGCONT it still has to catch up on them, and
    // a direct get it answers then misses the newest key. Any replica may answer a
    // direct get (measured: two gets sent in a row on one connection were answered by
    // different replicas), so each round sends raw direct gets, which show whether a
    // replica that lacked the key was answering, together with as many reads through
    // the key store. Both are sent, and flushed to the follower's socket, while it
    // still hangs: on SIGCONT it reads them beside the replication it missed, and
    // answers them inline, most often before it has applied those 1,000 puts, rather
    // than only if they happen to outrun its catch-up.
    let follower_pid = cluster.node_pid(&follower);
    let mut lagging_rounds = 0;
    for _ in 0..10 {
        let hung = Hung(follower_pid);
        signal(follower_pid, libc::SIGSTOP);
        let mut last = None;
        for _ in 0..1_000 {
            let secret = domain::ids::SecretId::from_uuid(uuid::Uuid::new_v4());
            let key = domain::ids::KeyId::from_uuid(uuid::Uuid::new_v4());
            writer.put(&project, secret, key, &wrapped).await.unwrap();
            last = Some((secret, key));
        }
        let (secret, key) = last.unwrap();
        let name = format!("{project}.{secret}.{key}");
        let mut probes =
            futures::future::join_all((0..16).map(|_| lagging_bucket.get(name.clone())));
        let mut reads =
            futures::future::join_all((0..16).map(|_| lagging.get(&project, secret, key)));
        // One poll hands every request to the connection, ahead of the flush.
        assert!(futures::poll!(&mut probes).is_pending());
        assert!(futures::poll!(&mut reads).is_pending());
        lagging_client.flush().await.unwrap();
        drop(hung);
        let (probes, reads) = tokio::join!(probes, reads);
        for read in reads {
            assert_eq!(
                read.unwrap().as_ref(),
                Some(&wrapped),
                "a key acknowledged by two of three replicas was read as destroyed"
            );
        }
        if probes.into_iter().any(|p| p.unwrap().is_none()) {
            lagging_rounds += 1;
            if lagging_rounds == 3 {
                break;
            }
        }
    }
    // The test bites only if a replica that lacked the key answered while it was read.
    assert!(
        lagging_rounds > 0,
        "in ten rounds, no direct get sent beside the reads missed the newest key"
    );
}
