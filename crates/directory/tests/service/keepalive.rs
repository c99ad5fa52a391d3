//! The listener pings its HTTP/2 connections and closes those whose peer
//! stopped answering (a consumer's machine gone without a FIN).

use std::time::Duration;

use roster_directory::DirectoryConfig;
use roster_testkit::app::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client connection preface, an empty SETTINGS frame and the ACK of
/// the server's SETTINGS (RFC 9113 §3.4, §6.5): a peer that then goes silent.
const HANDSHAKE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\
    \x00\x00\x00\x04\x00\x00\x00\x00\x00\
    \x00\x00\x00\x04\x01\x00\x00\x00\x00";

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected() {
    let config = DirectoryConfig {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let env = Env::on_with_config(Backend::Sqlite, "keepalive", config).await;
    let mut silent = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    silent.write_all(HANDSHAKE).await.unwrap();
    let mut received = Vec::new();
    // A clean close or a reset: either way the connection is gone.
    let _closed_or_reset =
        tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut received))
            .await
            .expect("the server closed the silent connection");
    // Among what it sent before closing: a PING (frame type 6) not answered.
    let has_ping = received
        .windows(4)
        .any(|w| w[3] == 0x06 && w[..3] == [0, 0, 8]);
    assert!(has_ping, "no PING frame in {received:?}");
}
