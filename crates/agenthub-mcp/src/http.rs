//! stub
/// Options.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// t
    pub token: Option<String>,
    /// p
    pub token_in_path: bool,
    /// m
    pub max_sessions: usize,
}
/// Serves.
pub async fn serve_http<H, F>(
    _listener: tokio::net::TcpListener,
    _make: F,
    _options: HttpOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: rmcp::ServerHandler,
{
    shutdown.cancelled().await;
    Ok(())
}
