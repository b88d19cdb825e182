//! The log's hash chain through the binary: published rankings carry the chain hash of the log
//! they were computed from; `GET /v1/verify` and `chiso verify` pass on a clean log and on a
//! backup, and name the first chunk a tamperer changed — also when they fixed its CRC, and when
//! they rewrote the chain after it (the published hashes then disagree).

use crate::support::{get_json, Server};
use crate::tables::{append, history};
use serde_json::Value;
use sha2::Digest;
use std::path::Path;
use std::process::{Command, Output};

fn chiso_verify(data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chiso"))
        .args(["verify", "--data-dir"])
        .arg(data_dir)
        .env("CHISO_LOG", "warn")
        .output()
        .expect("chiso runs")
}

/// The log's RocksDB, opened as a tamperer would (every column family as it is).
pub(crate) fn open_log(data_dir: &Path) -> rocksdb::DB {
    let path = data_dir.join("log");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, names).unwrap()
}

/// Flips a byte of an event's data in the chunk starting at `first_position` and fixes its
/// CRC (`magic · version · crc32 · …`: the CRC covers what follows it).
fn flip_a_byte(db: &rocksdb::DB, first_position: u64) {
    let chunks = db.cf_handle("chunks").unwrap();
    let key = first_position.to_be_bytes();
    let mut bytes = db.get_cf(chunks, key).unwrap().unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    let crc = crc32fast::hash(&bytes[7..]);
    bytes[3..7].copy_from_slice(&crc.to_le_bytes());
    db.put_cf(chunks, key, bytes).unwrap();
}

/// Recomputes every chain hash from the chunk at `first_position` on, as a tamperer covering
/// their tracks would.
fn rewrite_chain_from(db: &rocksdb::DB, first_position: u64) {
    let (chunks, chain) = (
        db.cf_handle("chunks").unwrap(),
        db.cf_handle("chain").unwrap(),
    );
    let mut before = db.raw_iterator_cf(chain);
    before.seek_for_prev((first_position - 1).to_be_bytes());
    let mut previous: Vec<u8> = before.value().unwrap().to_vec();
    let mut iter = db.raw_iterator_cf(chunks);
    iter.seek(first_position.to_be_bytes());
    while let (Some(key), Some(bytes)) = (iter.key(), iter.value()) {
        let mut hasher = sha2::Sha256::new();
        hasher.update(&previous);
        hasher.update(bytes);
        previous = hasher.finalize().to_vec();
        db.put_cf(chain, key, &previous).unwrap();
        iter.next();
    }
}

/// The first position of the chunk holding `position`.
fn chunk_of(db: &rocksdb::DB, position: u64) -> u64 {
    let mut iter = db.raw_iterator_cf(db.cf_handle("chunks").unwrap());
    iter.seek_for_prev(position.to_be_bytes());
    u64::from_be_bytes(iter.key().unwrap().try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_verifies_a_clean_log_and_finds_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data).await;
    append(&server.url, &history("a", 200)).await;
    let client = reqwest::Client::new();
    let published: Value = client
        .post(format!("{}/v1/rankings/2019-03/publish", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(published["published"].as_u64() >= Some(1), "{published}");
    // Each ranking carries the chain hash of the log its figures came from.
    let rankings = get_json(&format!("{}/v1/streams/ranking-2019-03", server.url)).await;
    let ranking = &rankings["events"][0];
    let anchored = ranking["data"]["chain"]["position"]
        .as_u64()
        .expect("anchored");
    assert!(anchored < ranking["position"].as_u64().unwrap());
    assert_eq!(ranking["data"]["chain"]["hash"].as_str().unwrap().len(), 64);
    let verified = get_json(&format!("{}/v1/verify", server.url)).await;
    assert_eq!(
        (&verified["ok"], &verified["from"], &verified["mismatch"]),
        (&Value::Bool(true), &Value::from(0), &Value::Null),
        "{verified}"
    );
    assert!(
        verified["anchors"]["checked"].as_u64() >= Some(1),
        "{verified}"
    );
    let head = verified["to"].as_u64().unwrap();
    assert_eq!(verified["log_head"].as_u64(), Some(head));
    // A backup carries the chain and verifies on its own.
    let copy = dir.path().join("copy");
    let output = crate::backup::backup(&data, &copy);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(server.terminate().success());
    let output = chiso_verify(&copy);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("the log verifies"), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["head"]["hash"], verified["head"]["hash"]);

    // One byte of an event, its CRC fixed up: found at its chunk.
    let db = open_log(&data);
    let tampered = chunk_of(&db, anchored / 2);
    flip_a_byte(&db, tampered);
    drop(db);
    let output = chiso_verify(&data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let expected = format!("the chunk at position {tampered} does not match (hash_mismatch)");
    assert!(stderr.contains(&expected), "{stderr}");
    // The chain rewritten after it too: the hash the ranking published no longer matches.
    let db = open_log(&data);
    rewrite_chain_from(&db, tampered);
    drop(db);
    let output = chiso_verify(&data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("published rankings copied chain hashes"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["anchors"]["mismatched"][0]["anchored_position"].as_u64(),
        Some(anchored)
    );
}
