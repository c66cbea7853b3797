//! The client's `fs/*` calls against an in-process rexec server: every method once, block
//! reads and replace-mode writes through `RemoteFile`, the local refusals (relative paths,
//! oversized `write_file`) and a `read_file` larger than the old 64 MiB frame limit.

mod support;

use rexec_client::{ClientError, FileMode, MAX_WRITE_FILE_BYTES, WalkEntryKind, WalkOptions};
use std::path::{Path, PathBuf};
use support::{TestServer, connect, within};

struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("rexec-client-fs-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn every_method_round_trips() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let scratch = Scratch::new("methods");
    let dir = scratch.0.as_path();
    let file = dir.join("sub/f.txt");

    within(
        "create_directory",
        client.create_directory(&dir.join("sub"), true),
    )
    .await
    .expect("mkdir");
    within("write_file", client.write_file(&file, b"hello"))
        .await
        .expect("write");
    assert_eq!(client.read_file(&file).await.expect("read"), b"hello");
    let metadata = client.metadata(&file).await.expect("metadata");
    assert!(metadata.is_file && !metadata.is_symlink && metadata.size == 5);
    let batch = client
        .metadata_batch(&[file.clone(), dir.join("missing")])
        .await
        .expect("batch");
    assert!(batch[0].is_ok() && batch[1].as_ref().is_err_and(|e| e.code == -32004));
    assert_eq!(
        client
            .canonicalize(&dir.join("sub/../sub/f.txt"))
            .await
            .expect("canon"),
        std::fs::canonicalize(&file).expect("local canon")
    );
    let entries = client.read_directory(&dir.join("sub")).await.expect("ls");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].file_name, "f.txt");
    let walked = client
        .walk(
            dir,
            WalkOptions {
                max_depth: 5,
                max_directories: 10,
                max_entries: 10,
                follow_directory_symlinks: false,
                prune_hidden_directories: false,
            },
        )
        .await
        .expect("walk");
    let kinds: Vec<_> = walked.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [WalkEntryKind::Directory, WalkEntryKind::File]);
    client
        .copy(&dir.join("sub"), &dir.join("copy"), true)
        .await
        .expect("copy");
    assert_eq!(
        std::fs::read(dir.join("copy/f.txt")).expect("copied"),
        b"hello"
    );
    client
        .remove(&dir.join("copy"), true, false)
        .await
        .expect("rm");
    assert!(!dir.join("copy").exists());
    match client.metadata(&dir.join("copy")).await {
        Err(ClientError::Rpc(error)) => assert_eq!(error.code, -32004),
        other => panic!("metadata of a removed path: {other:?}"),
    }
}

#[tokio::test]
async fn blocks_and_local_refusals() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let scratch = Scratch::new("blocks");
    let target = scratch.0.join("blocks");
    std::fs::write(&target, b"old").expect("seed");

    let writer = client
        .open(&target, FileMode::Replace)
        .await
        .expect("open replace");
    writer
        .write_block(3, b"def".to_vec())
        .await
        .expect("block 2");
    writer
        .write_block(0, b"abc".to_vec())
        .await
        .expect("block 1");
    assert_eq!(std::fs::read(&target).expect("still old"), b"old");
    writer.close().await.expect("close");
    assert_eq!(std::fs::read(&target).expect("replaced"), b"abcdef");

    let reader = client
        .open(&target, FileMode::Read)
        .await
        .expect("open read");
    assert_eq!(
        reader.read_block(0, 4).await.expect("read"),
        (b"abcd".to_vec(), false)
    );
    assert_eq!(
        reader.read_block(4, 4).await.expect("read"),
        (b"ef".to_vec(), true)
    );

    match client.read_file(Path::new("relative")).await {
        Err(ClientError::InvalidInput(text)) => assert!(text.contains("not absolute"), "{text}"),
        other => panic!("relative path: {other:?}"),
    }
    let huge = vec![0u8; MAX_WRITE_FILE_BYTES + 1];
    match client.write_file(&target, &huge).await {
        Err(ClientError::InvalidInput(text)) => assert!(text.contains("block-wise"), "{text}"),
        other => panic!("oversized write_file: {other:?}"),
    }
    // The connection is still fine.
    assert_eq!(client.read_file(&target).await.expect("read"), b"abcdef");
}

#[tokio::test]
async fn read_file_beyond_64_mib() {
    let server = TestServer::start().await;
    let client = connect(&server.url).await;
    let scratch = Scratch::new("large");
    let big = scratch.0.join("big");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(50 * 1024 * 1024)
        .expect("sparse 50 MiB (its base64 is over 64 MiB)");
    let bytes = within("read_file 50 MiB", client.read_file(&big))
        .await
        .expect("read");
    assert_eq!(bytes.len(), 50 * 1024 * 1024);
    assert!(bytes.iter().all(|&b| b == 0));
}
