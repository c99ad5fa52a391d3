//! The gateway's connections to the directory service
//! (`roster_gateway::pool`) against real HTTP/2 servers over loopback TCP:
//! the directory service itself beside an address nothing listens on, a
//! server that accepts and then never answers, and one that refuses a
//! stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use roster_directory::DirectoryConfig;
use roster_gateway::pool::{Dial, PING_INTERVAL, PING_TIMEOUT, Pool, PoolConfig};
use roster_testkit::app::{Server, loopback, sqlite_store};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// A pool of plain HTTP/2 connections to `addr`, default pings.
pub(crate) fn config(addr: SocketAddr) -> PoolConfig {
    PoolConfig {
        scheme: http::uri::Scheme::HTTP,
        authority: addr.to_string().parse().unwrap(),
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: None,
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
    }
}

async fn check(pool: &Pool) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let response = HealthClient::new(pool.clone()).check(request).await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn every_call_reaches_the_live_member_when_another_is_dead() {
    let server = Server::start(sqlite_store("pool").await, DirectoryConfig::default()).await;
    let (refusing, dead) = loopback().await;
    drop(refusing);
    let pool = Pool::new(config(server.addr));
    pool.insert(Dial::Addr(dead));
    pool.insert(Dial::Addr(server.addr));
    pool.remove(&Dial::Host);
    let dials = |outcome: &str| {
        let labels = roster_telemetry::metrics::OutcomeLabels {
            outcome: outcome.into(),
        };
        let family = &roster_telemetry::metrics::metrics().directory_dials;
        family.get_or_create(&labels).get()
    };
    let failed = dials("failed");
    for call in 0..20 {
        let status = check(&pool)
            .await
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(status, ServingStatus::Serving, "call {call}");
    }
    assert!(
        dials("failed") > failed,
        "the dead member's dial is counted"
    );
}

#[tokio::test]
async fn a_call_to_a_server_gone_silent_fails_once_its_pings_go_unanswered() {
    let (listener, addr) = loopback().await;
    // Accepts, reads everything, answers nothing (not even SETTINGS).
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut sink = vec![0; 16 * 1024];
        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let pool = Pool::new(PoolConfig {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..config(addr)
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), check(&pool))
        .await
        .expect("the call ends instead of hanging");
    assert!(answer.is_err(), "{answer:?}");
}

/// Refuses the first stream (REFUSED_STREAM, RFC 9113 §8.7: not processed)
/// and answers every later one SERVING; counts the streams.
async fn refuse_once(listener: TcpListener, streams: Arc<AtomicUsize>) {
    let (socket, _) = listener.accept().await.unwrap();
    let mut connection = h2::server::handshake(socket).await.unwrap();
    while let Some(Ok((_, mut respond))) = connection.accept().await {
        if streams.fetch_add(1, Ordering::SeqCst) == 0 {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        answer_serving(respond);
    }
}

/// Closes its first connection with GOAWAY having processed nothing, as a
/// pod leaving on SIGTERM does, then answers SERVING on the next one;
/// counts the connections.
async fn go_away_once(listener: TcpListener, connections: Arc<AtomicUsize>) {
    let (socket, _) = listener.accept().await.unwrap();
    connections.fetch_add(1, Ordering::SeqCst);
    let mut leaving = h2::server::handshake(socket).await.unwrap();
    leaving.abrupt_shutdown(h2::Reason::NO_ERROR);
    while let Some(Ok(_)) = leaving.accept().await {}
    let (socket, _) = listener.accept().await.unwrap();
    connections.fetch_add(1, Ordering::SeqCst);
    let mut connection = h2::server::handshake(socket).await.unwrap();
    while let Some(Ok((_, respond))) = connection.accept().await {
        answer_serving(respond);
    }
}

/// A gRPC answer to `grpc.health.v1.Health/Check`: SERVING.
fn answer_serving(mut respond: h2::server::SendResponse<Bytes>) {
    let head = http::Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut body = respond.send_response(head, false).unwrap();
    let message = prost::Message::encode_to_vec(&HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    });
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    body.send_data(Bytes::from(frame), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    body.send_trailers(trailers).unwrap();
}

#[tokio::test]
async fn a_call_refused_by_a_leaving_server_is_sent_on_a_new_connection() {
    let (listener, addr) = loopback().await;
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(go_away_once(listener, Arc::clone(&connections)));
    let pool = Pool::new(config(addr));
    let status = check(&pool)
        .await
        .expect("answered on the second connection");
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_stream_is_sent_again() {
    let (listener, addr) = loopback().await;
    let streams = Arc::new(AtomicUsize::new(0));
    tokio::spawn(refuse_once(listener, Arc::clone(&streams)));
    let pool = Pool::new(config(addr));
    let resent = || roster_telemetry::metrics::metrics().directory_resent.get();
    let before = resent();
    let status = check(&pool).await.expect("answered on the second stream");
    assert_eq!(status, ServingStatus::Serving);
    assert_eq!(
        streams.load(Ordering::SeqCst),
        2,
        "refused once, then answered"
    );
    assert!(resent() > before, "the second sending is counted");
}
