//! A bounded queue shared fairly by lanes (tenants): items are taken one lane at a time,
//! round robin, so a tenant with a thousand windows queued delays another tenant's two by at
//! most one window each per turn, and a lane may hold only its share of the room, so one
//! tenant's backlog cannot fill the queue for everyone.

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
    len: usize,
    closed: bool,
}

/// What [`FairQueue::pop`] got.
#[derive(Debug)]
pub enum Pop<T> {
    /// The next item, by turn.
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
}

impl<T> FairQueue<T> {
    /// A queue of `cap` items in all, `lane_cap` per lane.
    pub fn new(cap: usize, lane_cap: usize) -> FairQueue<T> {
        FairQueue {
            state: Mutex::new(State {
                lanes: HashMap::new(),
                turn: VecDeque::new(),
                len: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            cap: cap.max(1),
            lane_cap: lane_cap.clamp(1, cap.max(1)),
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
        if n == 1 {
            self.ready.notify_one();
        } else {
            self.ready.notify_all();
        }
        Ok(())
    }

    fn take(s: &mut State<T>) -> Option<T> {
        let lane = s.turn.pop_front()?;
        let q = s.lanes.get_mut(&lane)?;
        let item = q.pop_front();
        if q.is_empty() {
            s.lanes.remove(&lane);
        } else {
            s.turn.push_back(lane);
        }
        if item.is_some() {
            s.len -= 1;
        }
        item
    }

    /// The next item by turn, waiting up to `wait` (`None`: until one comes or the queue
    /// closes).
    pub fn pop(&self, wait: Option<Duration>) -> Pop<T> {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut s = self.lock();
        loop {
            if let Some(item) = Self::take(&mut s) {
                return Pop::Item(item);
            }
            if s.closed {
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

    /// Close: waiting and later `pop`s return [`Pop::Closed`] once the items are gone.
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
        while let Pop::Item(x) = q.pop(Some(Duration::ZERO)) {
            v.push(x);
        }
        v
    }

    #[test]
    fn lanes_take_turns_one_item_each() {
        let q = FairQueue::new(100, 60);
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
        let q = FairQueue::new(100, 40);
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
        let q = Arc::new(FairQueue::<u32>::new(4, 4));
        assert!(matches!(q.pop(Some(Duration::from_millis(5))), Pop::Empty));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(None));
        std::thread::sleep(Duration::from_millis(20));
        q.push_all("a", vec![7]).unwrap();
        assert!(matches!(t.join().unwrap(), Pop::Item(7)));
        let q3 = q.clone();
        let t = std::thread::spawn(move || q3.pop(None));
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert!(matches!(t.join().unwrap(), Pop::Closed));
    }
}
