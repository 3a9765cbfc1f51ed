//! Benchmark of live delivery (Server-Sent Events), not a test: figures depend on the
//! machine, so this prints them instead of asserting.
//!
//! `cargo run --release --example events_bench [MESSAGES]` starts the real server in-process
//! on a temporary database, signs up 100 users, opens one event stream for each, sends
//! MESSAGES (default 3000) messages between random pairs from 8 sender threads, and prints
//! the latency from the start of each `send-message/` request to the moment the receiver's
//! stream delivered it (median, p90, p99, max). Then it opens 1,000 more streams (10 per
//! user) and prints how much the process's resident memory grew (`VmRSS` from
//! `/proc/self/status`; the server runs in this process, the client sockets cost no RSS).

use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use whitebeat::config::Argon2Cost;

const USERS: usize = 100;
const SENDERS: usize = 8;
const EXTRA_STREAMS_PER_USER: usize = 10;

type Times = Arc<Mutex<HashMap<u64, Instant>>>;

fn main() {
    let messages: usize = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("EVENTS_BENCH_MESSAGES").ok())
        .map(|v| v.parse().expect("MESSAGES must be a number"))
        .unwrap_or(3000);
    // Two sockets per stream (client and server end, both in this process).
    whitebeat::server::raise_fd_limit();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = whitebeat::Config::new(dir.path().join("bench.sqlite3"));
    config.bind = "127.0.0.1:0".parse().unwrap();
    // Passwords are not what is measured.
    config.argon2 = Argon2Cost {
        memory_kib: 64,
        iterations: 1,
    };
    config.max_streams = 4000;
    config.max_streams_per_user = EXTRA_STREAMS_PER_USER + 2;
    config.max_connections = 8192;
    let threads = config.threads;
    let handle = whitebeat::serve(config).expect("server starts");
    let addr = handle.addr();
    let base = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    println!("White Beat events benchmark");
    println!("  server: in-process on {addr}, {threads} workers, synchronous=FULL, temp DB");

    // Users.
    let t = Instant::now();
    let tokens: Vec<String> = (0..USERS)
        .map(|i| {
            let name = format!("user{i:03}");
            let body = json!({"username": name, "password": "password123"});
            let r = agent
                .post(&format!("{base}/api/signup/"))
                .send_json(body.clone());
            assert_eq!(r.expect("signup").status(), 201);
            let r: Value = agent
                .post(&format!("{base}/api/login/"))
                .send_json(body)
                .expect("login")
                .into_json()
                .unwrap();
            r["token"].as_str().unwrap().to_string()
        })
        .collect();
    println!(
        "  {USERS} users signed up and logged in in {:?}",
        t.elapsed()
    );

    // One stream per user, each read by its own thread.
    let received: Times = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for token in &tokens {
        let (stream, rest) = open_stream(addr, token);
        let received = received.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            read_events(stream, rest, &received, &stop)
        }));
    }
    wait_until(Duration::from_secs(10), || {
        handle.app().hub.open_streams() == USERS
    });
    println!("  {USERS} event streams open");

    // Messages between random pairs.
    let sent: Times = Arc::default();
    let round_trips: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..SENDERS {
            let (agent, base, tokens) = (&agent, &base, &tokens);
            let (sent, round_trips) = (&sent, &round_trips);
            scope.spawn(move || {
                let mut rng = rand::thread_rng();
                for seq in (t..messages).step_by(SENDERS) {
                    let from = rng.gen_range(0..USERS);
                    let to = (from + rng.gen_range(1..USERS)) % USERS;
                    let body = json!({
                        "receiver": format!("user{to:03}"),
                        "content": format!("bench {seq}"),
                    });
                    let t0 = Instant::now();
                    sent.lock().unwrap().insert(seq as u64, t0);
                    let r = agent
                        .post(&format!("{base}/api/send-message/"))
                        .set("Authorization", &format!("Bearer {}", tokens[from]))
                        .send_json(body)
                        .expect("send");
                    assert_eq!(r.status(), 201);
                    round_trips.lock().unwrap().push(t0.elapsed());
                }
            });
        }
    });
    let send_time = started.elapsed();
    let all_in = wait_until(Duration::from_secs(30), || {
        received.lock().unwrap().len() >= messages
    });
    let sent = sent.lock().unwrap();
    let received_map = received.lock().unwrap();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(seq, t0)| {
            received_map
                .get(seq)
                .map(|t1| t1.saturating_duration_since(*t0))
        })
        .collect();
    latencies.sort();
    let mut rtts = round_trips.lock().unwrap().clone();
    rtts.sort();
    println!();
    println!(
        "Delivery: {messages} messages from {SENDERS} threads in {send_time:.2?} ({:.0} msg/s)",
        messages as f64 / send_time.as_secs_f64()
    );
    println!(
        "  delivered to the receiver's stream: {} of {messages}{}",
        latencies.len(),
        if all_in { "" } else { "  (SOME MISSING)" }
    );
    println!(
        "  send -> receipt latency: median {}  p90 {}  p99 {}  max {}",
        ms(pct(&latencies, 50.0)),
        ms(pct(&latencies, 90.0)),
        ms(pct(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "  send-message/ round trip (for comparison): median {}  p99 {}",
        ms(pct(&rtts, 50.0)),
        ms(pct(&rtts, 99.0)),
    );
    drop(received_map);
    drop(sent);

    // Memory per open stream.
    let before = vm_rss_kib();
    let t = Instant::now();
    let mut idle = Vec::with_capacity(USERS * EXTRA_STREAMS_PER_USER);
    for _ in 0..EXTRA_STREAMS_PER_USER {
        for token in &tokens {
            idle.push(open_stream(addr, token).0);
        }
    }
    let extra = idle.len();
    let opened = wait_until(Duration::from_secs(30), || {
        handle.app().hub.open_streams() == USERS + extra
    });
    // Let the stream threads settle on their first wait.
    std::thread::sleep(Duration::from_millis(500));
    let after = vm_rss_kib();
    println!();
    println!(
        "Memory: opened {extra} more streams in {:.2?} ({} open in all{})",
        t.elapsed(),
        handle.app().hub.open_streams(),
        if opened { "" } else { ", NOT ALL REGISTERED" }
    );
    println!("  VmRSS before {before} KiB, after {after} KiB");
    let grew = after.saturating_sub(before);
    println!(
        "  increase {grew} KiB = {:.1} MiB, {:.1} KiB per stream",
        grew as f64 / 1024.0,
        grew as f64 / extra as f64
    );

    stop.store(true, Ordering::SeqCst);
    drop(idle);
    handle.shutdown();
    for r in readers {
        let _ = r.join();
    }
}

/// Opens `GET /api/events/` and returns the socket after the response head, plus any
/// bytes read past it.
fn open_stream(addr: SocketAddr, token: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).unwrap();
    write!(
        tcp,
        "GET /api/events/ HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).expect("stream head");
        assert!(n > 0, "stream closed before its head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            return (tcp, buf[end + 4..].to_vec());
        }
    }
}

/// Records when each `bench N` message reaches its receiver.
fn read_events(tcp: TcpStream, rest: Vec<u8>, received: &Times, stop: &AtomicBool) {
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reader = BufReader::new(std::io::Cursor::new(rest).chain(tcp));
    let mut event = String::new();
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        // A timeout may leave half a line in `line`: keep it and read on.
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {}
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let full = std::mem::take(&mut line);
        let full = full.trim_end();
        if let Some(name) = full.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(data) = full.strip_prefix("data: ") {
            if event != "message" {
                continue;
            }
            let now = Instant::now();
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if v["is_mine"] == false {
                if let Some(seq) = v["content"]
                    .as_str()
                    .and_then(|c| c.strip_prefix("bench "))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    received.lock().unwrap().insert(seq, now);
                }
            }
        }
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
