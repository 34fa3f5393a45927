//! A timer a connection keeps across its requests, for a deadline that
//! moves with each of them (the header read timeout, a request's timeout).
//!
//! Resetting a tokio `Sleep` costs about 200 instructions (the deadline
//! turned into a tick, the runtime handle cloned); two a request were 5 %
//! of the activator's instructions per request (`callgrind`, c=16). Almost
//! every deadline is later than the one the timer is armed for, so the
//! timer is left alone and re-armed only when it fires early, as nginx
//! leaves a timer that moves by less than 300 ms (`NGX_TIMER_LAZY_DELAY`).
//! A deadline earlier than the armed one is armed at once.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// Ready once `deadline` has passed, on `timer` (armed for any time):
/// polled again while the deadline has not passed, it waits on.
pub fn poll_until(mut timer: Pin<&mut Sleep>, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Fired at the time it was armed for: that is the deadline, or an
        // earlier one left from an earlier request.
        if timer.deadline() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    async fn until(timer: Pin<&mut Sleep>, deadline: Instant) {
        let mut timer = timer;
        poll_fn(|cx| poll_until(timer.as_mut(), deadline, cx)).await;
    }

    /// Now, and a timer armed `after` from now.
    fn armed(after: Duration) -> (Instant, Pin<Box<Sleep>>) {
        (Instant::now(), Box::pin(tokio::time::sleep(after)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_kept_to_though_the_timer_fires_earlier() {
        let (start, mut timer) = armed(Duration::from_secs(1));
        until(timer.as_mut(), start + Duration::from_secs(3)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // A timer that fired long ago, for a deadline still ahead.
        tokio::time::advance(Duration::from_secs(10)).await;
        let now = Instant::now();
        until(timer.as_mut(), now + Duration::from_secs(2)).await;
        assert_eq!(Instant::now() - now, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_than_the_timer_s_is_kept_to() {
        let (start, mut timer) = armed(Duration::from_secs(30));
        until(timer.as_mut(), start + Duration::from_secs(2)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_not_yet_passed_is_pending() {
        let (start, mut timer) = armed(Duration::from_millis(10));
        let deadline = start + Duration::from_secs(5);
        let waited = tokio::time::timeout(Duration::from_secs(4), until(timer.as_mut(), deadline));
        assert!(waited.await.is_err(), "not ready a second before");
        until(timer.as_mut(), deadline).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }
}
