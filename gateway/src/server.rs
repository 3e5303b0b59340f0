//! Starting and stopping the gateway: `bind` the configured listeners, then `run` them
//! until the shutdown token fires. Tests bind port 0 themselves and pass the listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream;
use fleetgate_codecs::Protocol;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use fleetgate_contracts::{Config, stream};

use crate::gateway::Gateway;
use crate::metrics::Refusal;
use crate::registry::{Registry, keep_current};
use crate::{archive, connection, udp};

/// The sockets the gateway serves.
pub struct Listeners {
    /// TCP listeners with their protocol and idle timeout.
    pub tcp: Vec<(Protocol, Duration, TcpListener)>,
    /// UDP sockets with their protocol and idle timeout.
    pub udp: Vec<(Protocol, Duration, UdpSocket)>,
    /// `/metrics` and `/health`.
    pub metrics: Option<TcpListener>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {address} for {what}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// Which listener.
        what: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

fn bind_error(address: impl ToString, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let (address, what) = (address.to_string(), what.into());
    move |source| StartError::Bind { address, what, source }
}

/// Connections the kernel may hold for a device listener before it accepts them (capped
/// by `net.core.somaxconn`). Fleets reconnect all at once after an outage; with tokio's
/// default of 1,024 a storm of 10,000 logins overflowed the queue and the dropped
/// handshakes waited for TCP's retransmission backoff, up to minutes.
const DEVICE_BACKLOG: u32 = 65_535;

/// A TCP listener for devices, with [`DEVICE_BACKLOG`].
fn device_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(DEVICE_BACKLOG)
}

/// Binds every configured listener.
pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
    let mut listeners = Listeners { tcp: Vec::new(), udp: Vec::new(), metrics: None };
    for listener in &config.gateway.listeners {
        let protocol = listener.protocol;
        let idle = Duration::from_secs(listener.idle_timeout_s);
        let name = protocol.name();
        if let Some(port) = listener.tcp_port {
            let address = SocketAddr::new(config.gateway.bind, port);
            let socket = device_listener(address).map_err(bind_error(address, format!("{name} tcp")))?;
            listeners.tcp.push((protocol, idle, socket));
        }
        if let Some(port) = listener.udp_port {
            let address = SocketAddr::new(config.gateway.bind, port);
            let socket = UdpSocket::bind(address).await.map_err(bind_error(address, format!("{name} udp")))?;
            listeners.udp.push((protocol, idle, socket));
        }
    }
    if !config.gateway.metrics_addr.is_empty() {
        let address = &config.gateway.metrics_addr;
        let socket = TcpListener::bind(address).await.map_err(bind_error(address, "metrics"))?;
        listeners.metrics = Some(socket);
    }
    Ok(listeners)
}

/// Raises the open-file limit to what `max_connections` needs, as far as allowed.
fn raise_file_limit(max_connections: usize) {
    let wanted = max_connections as u64 + 1024;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => {
            tracing::warn!(wanted, got, "open-file limit is below what max_connections needs");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// Accepts connections until `shutdown`, refusing those over the cap and backing off
/// when accepting fails (out of file descriptors).
async fn accept_loop(
    listener: TcpListener,
    protocol: Protocol,
    idle_timeout: Duration,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, %protocol, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(slot) = gateway.connection_slots.clone().try_acquire_owned() else {
            gateway.metrics.refused(Refusal::ConnectionCap);
            if let Some(suppressed) = gateway.cap_log.allow() {
                tracing::warn!(%peer, max = gateway.config.gateway.max_connections, suppressed, "connection cap reached; refusing");
            }
            drop(socket);
            continue;
        };
        tracker.spawn(connection::serve(socket, peer, protocol, idle_timeout, gateway.clone(), shutdown.clone(), slot));
    }
}

/// Creates or updates the stream, retrying until NATS answers or `shutdown`.
async fn keep_stream(
    js: jetstream::Context,
    config: fleetgate_contracts::config::NatsConfig,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match stream::ensure_stream(&js, &config).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, stream = config.stream, "cannot create the stream yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs the gateway on `listeners` until `shutdown`, then stops accepting, lets frames
/// in flight finish (publish and answer) for at most `drain_timeout_s`, and returns.
pub async fn run(listeners: Listeners, config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    raise_file_limit(config.gateway.max_connections);
    // Connect in the background: devices are answered (or not) by what JetStream says,
    // so a NATS server that is down at start only delays acknowledgements.
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(config.nats.url.as_str())
        .await
        .map_err(|e| StartError::Config(format!("nats url {:?}: {e}", config.nats.url)))?;
    let mut js = jetstream::new(nats.clone());
    js.set_timeout(Duration::from_secs(config.nats.publish_timeout_s));

    let registry = Arc::new(Registry::default());
    match fleetgate_store::connect(&config.postgres.url).await {
        Ok(client) => match registry.reload(&client).await {
            Ok(n) => tracing::info!(devices = n, "device registry loaded"),
            Err(error) => {
                tracing::error!(%error, "cannot load the device registry; every device is refused until it loads")
            }
        },
        Err(error) => {
            tracing::error!(%error, "cannot load the device registry; every device is refused until it loads")
        }
    }

    let (archive_queue, archive_records) = tokio::sync::mpsc::channel(archive::QUEUE_RECORDS);
    let protocols = listeners.tcp.iter().map(|l| l.0).chain(listeners.udp.iter().map(|l| l.0)).collect();
    let gateway = Arc::new(Gateway::new(config.clone(), protocols, registry.clone(), js.clone(), archive_queue));
    // The archive writer outlives the connections: it stops once they have drained.
    let archive_done = CancellationToken::new();
    let archive_writer = tokio::spawn(archive::write_batches(
        js.clone(),
        stream::archive_subject(&config.nats.subject_prefix),
        archive_records,
        archive::batch_limit(config.nats.archive_max_bytes),
        Duration::from_secs(config.nats.publish_timeout_s),
        gateway.metrics.clone(),
        archive_done.clone(),
    ));
    let tracker = TaskTracker::new();
    tracker.spawn(keep_stream(js, config.nats.clone(), shutdown.clone()));
    tracker.spawn(keep_current(
        registry,
        config.postgres.url.clone(),
        nats.clone(),
        stream::registry_subject(&config.nats.subject_prefix),
        Duration::from_secs(config.gateway.registry_refresh_s.max(1)),
        shutdown.clone(),
    ));
    tracker.spawn(crate::commands::route_wake_ups(
        nats.clone(),
        config.nats.subject_prefix.clone(),
        gateway.connected.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = listeners.metrics {
        let gateway = gateway.clone();
        let render = move || {
            gateway.metrics.registry_devices.store(gateway.registry.len() as i64, Relaxed);
            gateway.metrics.render()
        };
        tracker.spawn(fleetgate_contracts::metrics::serve(listener, render, shutdown.clone()));
    }
    for (protocol, idle, listener) in listeners.tcp {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(protocol = protocol.name(), %address, "listening (tcp)");
        }
        tracker.spawn(accept_loop(listener, protocol, idle, gateway.clone(), shutdown.clone(), tracker.clone()));
    }
    for (protocol, idle, socket) in listeners.udp {
        if let Ok(address) = socket.local_addr() {
            tracing::info!(protocol = protocol.name(), %address, "listening (udp)");
        }
        tracker.spawn(udp::serve(socket, protocol, idle, gateway.clone(), shutdown.clone(), tracker.clone()));
    }

    shutdown.cancelled().await;
    tracker.close();
    let drain = Duration::from_secs(config.gateway.drain_timeout_s);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(drain_s = drain.as_secs(), tasks = tracker.len(), "drain time over; closing what is left");
    }
    archive_done.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(config.nats.publish_timeout_s), archive_writer).await;
    let _ = nats.flush().await;
    tracing::info!("gateway stopped");
    Ok(())
}
