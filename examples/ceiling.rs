//! The benchmark's ceiling: the same HTTP library (tiny_http) with the same number of worker
//! threads as `whitebeat serve --threads N`, answering every request with a fixed JSON body
//! and doing nothing else. No database, no routing, no logging: whatever White Beat does
//! beyond this is what its figures are measured against (`bench/run` prints each as a
//! fraction of this one).
//!
//! ```text
//! cargo run --release --example ceiling -- --bind 127.0.0.1:8001 --threads 8
//! ```

use std::sync::Arc;

/// About the size of White Beat's health answer.
const BODY: &str = r#"{"status":"healthy","service":"White Beat Backend - User Chat","version":"0.1.0","database_connected":true,"admin_group_exists":true,"features":{"user_to_user_chat":true,"group_based_admin":true,"signup":true,"authentication":true,"live_events":true},"stats":{"total_users":1000,"total_messages":1000000,"total_conversations":20000,"admin_users":0}}"#;

fn main() {
    let mut bind = String::from("127.0.0.1:8001");
    let mut threads: usize = 8;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--bind" => bind = value,
            "--threads" => threads = value.parse().expect("--threads takes a number"),
            other => {
                eprintln!("usage: ceiling [--bind ADDR] [--threads N] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    let server = Arc::new(tiny_http::Server::http(&bind).unwrap_or_else(|e| {
        eprintln!("ceiling: cannot listen on {bind}: {e}");
        std::process::exit(1);
    }));
    let content_type =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    println!("ceiling listening on http://{bind} with {threads} workers");
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let server = server.clone();
            let content_type = content_type.clone();
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    let resp =
                        tiny_http::Response::from_string(BODY).with_header(content_type.clone());
                    let _ = rq.respond(resp);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
