//! A bounded queue shared fairly by lanes (tenants): items are taken one lane at a time,
//! round robin, so a tenant with a thousand windows queued delays another tenant's two by at
//! most one turn, and a lane may hold only its share of the room, so one tenant's backlog
//! cannot fill the queue for everyone.
//!
//! Workers take whole batches from one lane ([`FairQueue::pop_batch`]): a quiet tenant's
//! window then runs in its own small batch instead of waiting for fifteen of a noisy tenant's
//! windows batched with it, and a lane may have at most `lane_sessions` batches running at
//! once, so with that set below the number of workers one tenant's flood always leaves a
//! session free for the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why items were not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The lane holds its share already.
    Lane,
    /// The whole queue is full.
    Queue,
}

struct State<T> {
    lanes: HashMap<Arc<str>, VecDeque<T>>,
    /// Lanes with items, in turn order.
    turn: VecDeque<Arc<str>>,
    /// Batches running per lane (lanes with none are absent).
    running: HashMap<Arc<str>, usize>,
    len: usize,
    closed: bool,
}

/// Items taken from one lane by [`FairQueue::pop_batch`]; give it back with
/// [`FairQueue::finish`] once run.
#[derive(Debug)]
pub struct Batch<T> {
    /// The lane the items came from.
    pub lane: Arc<str>,
    /// The items, in the order they were queued.
    pub items: Vec<T>,
}

/// What [`FairQueue::pop_batch`] got.
#[derive(Debug)]
pub enum Pop<T> {
    /// The next batch, by turn.
    Item(T),
    /// Nothing arrived in time.
    Empty,
    /// The queue was closed.
    Closed,
}

/// See the module documentation.
pub struct FairQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    cap: usize,
    lane_cap: usize,
    lane_sessions: usize,
}

impl<T> FairQueue<T> {
    /// A queue of `cap` items in all, `lane_cap` per lane, batches of one lane running at
    /// most `lane_sessions` at once.
    pub fn new(cap: usize, lane_cap: usize, lane_sessions: usize) -> FairQueue<T> {
        FairQueue {
            state: Mutex::new(State {
                lanes: HashMap::new(),
                turn: VecDeque::new(),
                running: HashMap::new(),
                len: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            cap: cap.max(1),
            lane_cap: lane_cap.clamp(1, cap.max(1)),
            lane_sessions: lane_sessions.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // a worker that panicked while holding the lock left consistent state (every
        // mutation below completes before it can panic)
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `items` in `lane`, all or none.
    pub fn push_all(&self, lane: &str, items: Vec<T>) -> Result<(), Full> {
        let n = items.len();
        let mut s = self.lock();
        let held = s.lanes.get(lane).map_or(0, VecDeque::len);
        if held + n > self.lane_cap {
            return Err(Full::Lane);
        }
        if s.len + n > self.cap {
            return Err(Full::Queue);
        }
        if n == 0 {
            return Ok(());
        }
        let key: Arc<str> = match s.lanes.get_key_value(lane) {
            Some((k, _)) => k.clone(),
            None => Arc::from(lane),
        };
        let q = s.lanes.entry(key.clone()).or_default();
        let was_empty = q.is_empty();
        q.extend(items);
        if was_empty {
            s.turn.push_back(key);
        }
        s.len += n;
        drop(s);
        // every waiter: one topping up another lane's batch, or one whose lanes are all at
        // their cap, cannot take these, and a single wake-up could land on it
        self.ready.notify_all();
        Ok(())
    }

    /// Up to `max` items of the first lane in turn that has fewer than `lane_sessions`
    /// batches running, waiting up to `wait` (`None`: until some come or the queue closes).
    /// The lane counts one more running batch until [`FairQueue::finish`].
    pub fn pop_batch(&self, max: usize, wait: Option<Duration>) -> Pop<Batch<T>> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut s = self.lock();
        loop {
            let free = s
                .turn
                .iter()
                .position(|l| s.running.get(l).copied().unwrap_or(0) < self.lane_sessions);
            if let Some(at) = free
                && let Some(lane) = s.turn.remove(at)
            {
                let mut items = Vec::new();
                Self::drain_lane(&mut s, &lane, max.max(1), &mut items);
                if s.lanes.contains_key(&lane) {
                    s.turn.push_back(lane.clone());
                }
                *s.running.entry(lane.clone()).or_default() += 1;
                return Pop::Item(Batch { lane, items });
            }
            if s.closed && s.len == 0 {
                return Pop::Closed;
            }
            s = match deadline {
                None => self.ready.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Pop::Empty;
                    }
                    self.ready
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Add more of the batch's own lane until it holds `max` items or `deadline` passes.
    pub fn top_up(&self, batch: &mut Batch<T>, max: usize, deadline: Instant) {
        let mut s = self.lock();
        loop {
            Self::drain_lane(&mut s, &batch.lane, max, &mut batch.items);
            let left = deadline.saturating_duration_since(Instant::now());
            if batch.items.len() >= max || left.is_zero() || s.closed {
                return;
            }
            s = self
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A batch was run: its lane may start another.
    pub fn finish(&self, lane: &str) {
        let mut s = self.lock();
        if let Some(n) = s.running.get_mut(lane) {
            *n -= 1;
            if *n == 0 {
                s.running.remove(lane);
            }
        }
        drop(s);
        self.ready.notify_all();
    }

    /// Move items of `lane` into `out` until it holds `max`; forget the lane once empty.
    fn drain_lane(s: &mut State<T>, lane: &Arc<str>, max: usize, out: &mut Vec<T>) {
        let Some(q) = s.lanes.get_mut(lane) else {
            return;
        };
        let n = max.saturating_sub(out.len()).min(q.len());
        out.extend(q.drain(..n));
        let empty = q.is_empty();
        s.len -= n;
        if empty {
            s.lanes.remove(lane);
            s.turn.retain(|l| l != lane);
        }
    }

    /// Close: waiting and later `pop_batch`es return [`Pop::Closed`] once the items are gone.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Items queued, and lanes holding some.
    pub fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.len, s.lanes.len())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &FairQueue<(char, u32)>) -> Vec<(char, u32)> {
        let mut v = Vec::new();
        while let Pop::Item(b) = q.pop_batch(1, Some(Duration::ZERO)) {
            q.finish(&b.lane);
            v.extend(b.items);
        }
        v
    }

    #[test]
    fn lanes_take_turns_one_item_each() {
        let q = FairQueue::new(100, 60, 1);
        q.push_all("big", (0..50).map(|i| ('b', i)).collect())
            .unwrap();
        q.push_all("small", vec![('s', 0), ('s', 1)]).unwrap();
        let order = drain(&q);
        // the small lane's two items come second and fourth, not after the big lane's 50
        assert_eq!(
            order[..5],
            [('b', 0), ('s', 0), ('b', 1), ('s', 1), ('b', 2)]
        );
        assert_eq!(order.len(), 52);
        assert_eq!(q.len(), (0, 0), "empty lanes are forgotten");
    }

    #[test]
    fn a_lane_cannot_take_more_than_its_share() {
        let q = FairQueue::new(100, 40, 1);
        q.push_all("big", (0..40).map(|i| ('b', i)).collect())
            .unwrap();
        assert_eq!(q.push_all("big", vec![('b', 99)]), Err(Full::Lane));
        q.push_all("other", (0..40).map(|i| ('o', i)).collect())
            .unwrap();
        assert_eq!(
            q.push_all("third", (0..21).map(|i| ('t', i)).collect()),
            Err(Full::Queue)
        );
        q.push_all("third", (0..20).map(|i| ('t', i)).collect())
            .unwrap();
        assert_eq!(q.len(), (100, 3));
    }

    #[test]
    fn pop_waits_and_close_ends_the_wait() {
        let q = Arc::new(FairQueue::<u32>::new(4, 4, 1));
        assert!(matches!(
            q.pop_batch(4, Some(Duration::from_millis(5))),
            Pop::Empty
        ));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_batch(4, None));
        std::thread::sleep(Duration::from_millis(20));
        q.push_all("a", vec![7]).unwrap();
        assert!(matches!(t.join().unwrap(), Pop::Item(b) if b.items == [7]));
        q.finish("a");
        let q3 = q.clone();
        let t = std::thread::spawn(move || q3.pop_batch(4, None));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert!(matches!(t.join().unwrap(), Pop::Closed));
    }

    #[test]
    fn batches_come_from_one_lane_in_turn() {
        let q = FairQueue::new(100, 60, 2);
        q.push_all("big", (0..40).map(|i| ('b', i)).collect())
            .unwrap();
        q.push_all("small", vec![('s', 0)]).unwrap();
        let Pop::Item(b1) = q.pop_batch(16, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        assert_eq!((&*b1.lane, b1.items.len()), ("big", 16));
        // the small lane's window is next, alone: not behind or inside the big lane's batch
        let Pop::Item(b2) = q.pop_batch(16, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        assert_eq!((&*b2.lane, b2.items.as_slice()), ("small", &[('s', 0)][..]));
        q.finish(&b2.lane);
        let Pop::Item(b3) = q.pop_batch(16, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        assert_eq!(&*b3.lane, "big");
        // `big` has two batches running: with lane_sessions 2 it must wait for one to end
        assert!(matches!(
            q.pop_batch(16, Some(Duration::from_millis(5))),
            Pop::Empty
        ));
        q.finish(&b1.lane);
        let Pop::Item(b4) = q.pop_batch(16, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        assert_eq!((&*b4.lane, b4.items[0]), ("big", ('b', 32)));
        q.finish(&b3.lane);
        q.finish(&b4.lane);
        assert_eq!(q.len(), (0, 0));
    }

    /// A lane with a session's worth of batches running leaves the other sessions to the
    /// other lanes, and topping up takes only the batch's own lane.
    #[test]
    fn a_busy_lane_leaves_sessions_to_others_and_top_up_stays_in_lane() {
        let q = Arc::new(FairQueue::new(100, 60, 1));
        q.push_all("loud", (0..10).map(|i| ('l', i)).collect())
            .unwrap();
        let Pop::Item(mut running) = q.pop_batch(4, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        q.push_all("quiet", vec![('q', 0)]).unwrap();
        q.top_up(&mut running, 6, Instant::now());
        assert_eq!(running.items.len(), 6);
        assert!(running.items.iter().all(|(c, _)| *c == 'l'));
        let Pop::Item(b) = q.pop_batch(4, Some(Duration::ZERO)) else {
            panic!("the quiet lane gets the free session at once")
        };
        assert_eq!(&*b.lane, "quiet");
        q.finish("quiet");
        // the loud lane waits for its running batch
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop_batch(4, None));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished());
        q.finish("loud");
        let Pop::Item(b) = t.join().unwrap() else {
            panic!("a batch")
        };
        assert_eq!((&*b.lane, b.items.len()), ("loud", 4));
    }

    /// A push must reach a worker that can take it: one worker topping up another lane's
    /// batch is waiting on the same condition and cannot.
    #[test]
    fn a_push_wakes_a_worker_that_can_take_it() {
        let q = Arc::new(FairQueue::new(100, 60, 2));
        q.push_all("a", vec![('a', 0)]).unwrap();
        let Pop::Item(mut running) = q.pop_batch(4, Some(Duration::ZERO)) else {
            panic!("a batch")
        };
        let q1 = q.clone();
        let topping = std::thread::spawn(move || {
            q1.top_up(&mut running, 4, Instant::now() + Duration::from_secs(3));
            running
        });
        let q2 = q.clone();
        let idle = std::thread::spawn(move || {
            let t = Instant::now();
            (q2.pop_batch(4, Some(Duration::from_secs(3))), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        q.push_all("b", vec![('b', 0)]).unwrap();
        let (got, waited) = idle.join().unwrap();
        assert!(matches!(got, Pop::Item(b) if &*b.lane == "b"));
        assert!(
            waited < Duration::from_secs(2),
            "woken at once, not at the timeout: {waited:?}"
        );
        q.close();
        let _ = topping.join().unwrap();
    }
}
