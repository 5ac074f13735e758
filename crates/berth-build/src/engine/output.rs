//! The legacy stream's text, kept in stage order while stages run concurrently.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Where a build's output goes (the daemon turns it into the JSON stream).
pub trait BuildOutput: Send + Sync {
    /// Text for the `stream` field (`Step 1/3 : FROM busybox\n`).
    fn stream(&self, text: &str);
    /// The `aux` ID message after each stage (`sha256:...`), so `-q` and `--iidfile` work.
    fn aux_id(&self, id: &str);
}

enum Msg {
    Text(String),
    Aux(String),
}

struct State {
    /// Stage indexes in the order their output is shown.
    order: Vec<usize>,
    /// Position in `order` of the stage whose output goes straight through.
    pos: usize,
    held: HashMap<usize, Vec<Msg>>,
    done: HashSet<usize>,
}

/// Forwards the current stage's output at once and holds later stages' until their turn.
#[derive(Clone)]
pub struct Printer {
    out: Arc<dyn BuildOutput>,
    state: Arc<Mutex<State>>,
}

impl Printer {
    pub fn new(out: Arc<dyn BuildOutput>, order: Vec<usize>) -> Printer {
        Printer {
            out,
            state: Arc::new(Mutex::new(State {
                order,
                pos: 0,
                held: HashMap::new(),
                done: HashSet::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, stage: usize, msg: Msg) {
        let mut st = self.lock();
        if st.order.get(st.pos) == Some(&stage) {
            // Written under the lock so that a flush of held lines cannot overtake it.
            self.write(msg);
        } else {
            st.held.entry(stage).or_default().push(msg);
        }
    }

    fn write(&self, msg: Msg) {
        match msg {
            Msg::Text(t) => self.out.stream(&t),
            Msg::Aux(id) => self.out.aux_id(&id),
        }
    }

    pub fn emit(&self, stage: usize, text: String) {
        self.send(stage, Msg::Text(text));
    }

    pub fn aux(&self, stage: usize, id: String) {
        self.send(stage, Msg::Aux(id));
    }

    /// Stage `stage` wrote its last line: the next stages' held lines go out.
    pub fn finish(&self, stage: usize) {
        let mut st = self.lock();
        st.done.insert(stage);
        while let Some(&cur) = st.order.get(st.pos) {
            if !st.done.contains(&cur) {
                break;
            }
            st.pos += 1;
            if let Some(&next) = st.order.get(st.pos) {
                for m in st.held.remove(&next).unwrap_or_default() {
                    self.write(m);
                }
            }
        }
    }
}
