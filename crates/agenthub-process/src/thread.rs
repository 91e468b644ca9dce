//! Handing blocking work to a thread of its own.

/// Runs `work` on a new thread named `name` and waits for its answer without blocking the
/// executor (any executor: the answer comes through a oneshot channel). `Ok(None)` when
/// the thread ended without an answer (it panicked); `Err` when no thread could be started.
pub async fn on_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Option<T>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let _ = tx.send(work());
    })?;
    Ok(rx.await.ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_answer_comes_back_and_a_panic_is_none() {
        let answer = pollster::block_on(super::on_thread("t-answer", || 42)).unwrap();
        assert_eq!(answer, Some(42));
        let panicked = pollster::block_on(super::on_thread("t-panic", || -> u8 { panic!("boom") })).unwrap();
        assert_eq!(panicked, None);
    }
}
