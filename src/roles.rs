//! Running the server roles: logging, the runtime, configuration, signals.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use fleetgate_contracts::Config;
use tokio_util::sync::CancellationToken;

/// Which role to run.
pub enum Role {
    /// Apply the migrations and create the streams.
    Migrate,
    /// The gateway.
    Gateway,
    /// The processor.
    Processor,
    /// The REST API.
    Api,
    /// Every role in one process.
    Serve,
    /// Create a tenant and its first admin key.
    CreateTenant {
        /// The company's name.
        name: String,
    },
    /// Decode archived frames again.
    Reprocess(crate::reprocess::ReprocessArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).init();
}

/// Runs `role` with the configuration at `config_path` (or `fleetgate.toml`, or the
/// defaults) until it ends or a signal stops it.
pub fn run(role: Role, config_path: Option<PathBuf>) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let path = config_path.or_else(|| Some(PathBuf::from("fleetgate.toml")).filter(|p| p.exists()));
        let config = Config::load(path.as_deref()).context("configuration")?;
        match role {
            Role::Migrate => migrate(&config).await,
            Role::Gateway => gateway(config).await,
            Role::Processor => processor(config).await,
            Role::Api => api(config).await,
            Role::Serve => serve(config).await,
            Role::CreateTenant { name } => create_tenant(&config, &name).await,
            Role::Reprocess(args) => crate::reprocess::run(&config, &args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let mut client = fleetgate_store::connect(&config.postgres.url).await?;
    let applied = fleetgate_store::migrate(&mut client).await?;
    tracing::info!(?applied, "postgres schema is current");
    let nats = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(config.nats.url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
    let js = async_nats::jetstream::new(nats);
    fleetgate_contracts::stream::ensure_stream(&js, &config.nats)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the stream {}: {e}", config.nats.stream))?;
    tracing::info!(stream = config.nats.stream, "jetstream stream is current");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

async fn gateway(config: Config) -> anyhow::Result<()> {
    let listeners = fleetgate_gateway::bind(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    fleetgate_gateway::run(listeners, config, shutdown).await?;
    Ok(())
}

async fn processor(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    fleetgate_processor::run(config, shutdown).await?;
    Ok(())
}

async fn api(config: Config) -> anyhow::Result<()> {
    let listener = fleetgate_api::bind(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    fleetgate_api::run(listener, config, shutdown).await?;
    Ok(())
}

/// Every role in one process; the first to fail stops the others.
async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = fleetgate_gateway::bind(&config).await?;
    let api_listener = fleetgate_api::bind(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let stop_all = |result: anyhow::Result<()>| {
        shutdown.cancel();
        result
    };
    let (gateway, processor, api) = tokio::join!(
        async {
            stop_all(fleetgate_gateway::run(listeners, config.clone(), shutdown.clone()).await.map_err(Into::into))
        },
        async { stop_all(fleetgate_processor::run(config.clone(), shutdown.clone()).await.map_err(Into::into)) },
        async {
            stop_all(fleetgate_api::run(api_listener, config.clone(), shutdown.clone()).await.map_err(Into::into))
        },
    );
    gateway?;
    processor?;
    api?;
    Ok(())
}

async fn create_tenant(config: &Config, name: &str) -> anyhow::Result<()> {
    let client = fleetgate_store::connect(&config.postgres.url).await?;
    let (tenant_id, api_key) =
        fleetgate_api::create_tenant(&client, name).await.map_err(|e| anyhow::anyhow!("{e}: {e:?}"))?;
    println!("{}", serde_json::json!({"tenant_id": tenant_id, "api_key": api_key}));
    Ok(())
}
