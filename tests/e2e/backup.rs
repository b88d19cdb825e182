//! `chiso backup`: a copy taken while the server appends and serves, and one taken with nobody
//! serving, each served again as it was at that moment; an existing destination is refused.

use crate::support::{read_everything, Server};
use crate::tables::{append, history, tables};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn backup(data_dir: &Path, dest: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chiso"))
        .arg("backup")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(dest)
        .env("CHISO_LOG", "warn")
        .output()
        .expect("chiso runs")
}

fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_while_serving_and_offline_serve_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    let last = append(&server.url, &history("a", 300)).await;
    let before = tables(&server.url, last).await;

    // While it serves: the server writes the copy (found through DATA/serve.url).
    let live = dir.path().join("live-copy");
    let output = backup(&data, &live);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("backed up"), "{stderr}");
    // The original moves on; the copy stays as it was.
    let later = append(&server.url, &history("b", 40)[5..]).await;
    let after = tables(&server.url, later).await;
    assert_ne!(after, before);
    let refused = backup(&data, &live);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("destination_exists"), "{stderr}");
    let original = read_everything(&server.url).await;
    assert!(server.terminate().success());

    // Nobody serving: the copy is made here.
    let offline = dir.path().join("offline-copy");
    let output = backup(&data, &offline);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !data.join("serve.url").exists(),
        "a stopped server removes its address"
    );

    for (copy, position, tables_then) in [(&live, last, &before), (&offline, later, &after)] {
        let mut served = Server::start(copy).await;
        assert_eq!(&tables(&served.url, position).await, tables_then);
        // The log up to that point, event for event (the scheduler may publish rankings after).
        let log = read_everything(&served.url).await;
        let upto = position as usize;
        assert_eq!(ids(&log[..=upto]), ids(&original[..=upto]));
        // It takes appends like the original.
        append(&served.url, &history("c", 3)[5..]).await;
        assert!(served.terminate().success());
    }
}
