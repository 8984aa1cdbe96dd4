//! Working on one queued message: route each due recipient, deliver, record
//! each outcome durably, bounce what failed.
//!
//! The caller holds the message lock. Every change to a recipient is written
//! to the envelope before the next recipient is tried: an alias expansion
//! before its members are delivered, an outcome right after it is known. A
//! recipient that failed is first recorded as `failed`, then its bounce is
//! queued, then it becomes `bounced`: a crash in between re-sends the bounce
//! rather than losing it.
//!
//! Before anything is delivered, the recipients about to be tried are
//! marked in flight (one note appended to the envelope per message, not
//! synced: see `spool::envelope`; recipients an expansion adds are marked
//! with it), and before each delivery whose outcome is to be written (the
//! message stays queued after it) the room for writing it is taken
//! ([`crate::spool::Spool::reserve`]), so that a spool that fills up
//! during a delivery cannot keep its outcome from being recorded. If the
//! mark or the room cannot be written (a full spool), nothing is delivered
//! and the error ends the caller's run: a recipient is never delivered
//! again merely because its outcome could not be recorded. One found in
//! flight by a later run was being delivered when its run died: it is
//! tried again, with a "possible duplicate" line, so a crash costs at most
//! one extra copy, never one per run.
//!
//! Batches ([`run_many`]): a queue run or runner works on up to
//! [`MAX_BATCH`] messages together. Each is routed as above ([`Work`]);
//! their mailbox deliveries are collected, and each mailbox's share goes
//! to one `dma-local` run (one lock, one fdatasync), whose result tells
//! each message how it went; then each message goes on as alone.
//!
//! Retries: `next_try` is never further away than RETRY_MAX (a clock
//! stepped back is corrected the next time the message is locked), and a
//! recipient expires only when the message is QUEUE_LIFETIME old *and* it
//! has failed [`MIN_ATTEMPTS`] times, so a clock stepped forward does not
//! bounce fresh mail.

use std::io;
use std::time::Duration;

use crate::context::Ctx;
use crate::local::ProgramCall;
use crate::route::{Expansion, Program, Route};
use crate::spool::{Envelope, Locked, Origin, Rcpt, State, now};
use crate::{bounce, error, info, notice, warning};

/// The result of one delivery attempt to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Delivered,
    /// Try again later: `<enhanced status> <text>`.
    Deferred(String),
    /// Bounce: `<enhanced status> <text>`.
    Failed(String),
}

/// The retry delay for a message queued `age` ago, as Postfix's queue
/// manager reckons it: as long as the message has waited so far (so the
/// delay doubles with every retry on schedule), with ±20 % jitter, within
/// `RETRY_MIN`..=`RETRY_MAX`. By age, not by the count of attempts: extra
/// attempts (`dma -q` run by hand) do not push the next retry away.
pub fn backoff(min: Duration, max: Duration, age: Duration) -> Duration {
    let base = age.clamp(min, max);
    let jitter = 0.8 + 0.4 * (getrandom::u32().unwrap_or(0) as f64 / u32::MAX as f64);
    base.mul_f64(jitter).clamp(min, max)
}

/// What this process delivered: the counts for a queue run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages locked and worked on.
    pub messages: u64,
    /// Recipients delivered.
    pub delivered: u64,
    /// Recipients deferred.
    pub deferred: u64,
    /// Recipients failed (bounced).
    pub failed: u64,
    /// Messages left in the queue (set by whoever sums up).
    pub left: u64,
}

impl Tally {
    /// One line, for a worker to hand its tally to its parent.
    pub fn to_line(self) -> String {
        format!(
            "{} {} {} {}\n",
            self.messages, self.delivered, self.deferred, self.failed
        )
    }

    /// Reads [`Tally::to_line`] (zeros for what is not there).
    pub fn from_line(line: &str) -> Tally {
        let mut n = line.split(' ').map(|w| w.parse().unwrap_or(0));
        let mut next = || n.next().unwrap_or(0);
        Tally {
            messages: next(),
            delivered: next(),
            deferred: next(),
            failed: next(),
            left: 0,
        }
    }

    /// Adds `o`'s counts.
    pub fn add(&mut self, o: &Tally) {
        self.messages += o.messages;
        self.delivered += o.delivered;
        self.deferred += o.deferred;
        self.failed += o.failed;
    }
}

static TALLY: std::sync::Mutex<Tally> = std::sync::Mutex::new(Tally {
    messages: 0,
    delivered: 0,
    deferred: 0,
    failed: 0,
    left: 0,
});

fn tally_mut() -> std::sync::MutexGuard<'static, Tally> {
    TALLY.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's tally so far.
pub fn tally() -> Tally {
    *tally_mut()
}

/// Counts a message taken up for delivery.
pub fn count_message() {
    tally_mut().messages += 1;
}

/// The fewest failed attempts after which a recipient may expire: the
/// message's age alone (a clock stepped forward) never bounces it.
pub const MIN_ATTEMPTS: u32 = 3;

/// Whether recipient `r` of a message created at `created` has been tried
/// long enough to give up on it.
fn expired(r: &Rcpt, created: i64, lifetime: i64, now: i64) -> bool {
    now.saturating_sub(created) >= lifetime && r.attempts >= MIN_ATTEMPTS
}

/// Whether the recipient is due now (or `force`d).
fn due(r: &Rcpt, force: bool, expired: bool, now: i64) -> bool {
    match r.state {
        State::Pending => true,
        State::Deferred => force || expired || r.next_try <= now,
        // A failed recipient only waits for its bounce.
        State::Delivered | State::Expanded | State::Failed { .. } => false,
    }
}

/// Whether anything of `env` is due at `now` (a queue run honouring
/// backoff skips the others without locking them). A retry time further
/// than `retry_max` away (the clock was stepped back) counts as due.
/// Nothing of a held message is ever due.
pub fn has_due(env: &Envelope, now: i64, lifetime: i64, retry_max: i64) -> bool {
    env.held.is_none()
        && env.rcpts.iter().any(|r| {
            due(r, false, expired(r, env.created, lifetime, now), now)
                || r.state == State::Deferred && r.next_try > now.saturating_add(retry_max)
                || r.state == State::Failed { bounced: false }
        })
}

/// Brings every retry time of `env` within `retry_max` of `now`; says
/// whether one changed (then the envelope is to be written).
fn cap_retries(env: &mut Envelope, now: i64, retry_max: i64) -> bool {
    let cap = now.saturating_add(retry_max);
    let mut changed = false;
    for r in env.rcpts.iter_mut() {
        if r.state == State::Deferred && r.next_try > cap {
            r.next_try = cap;
            changed = true;
        }
    }
    changed
}

/// Marks recipient `r` in flight, saying so if an earlier attempt was
/// interrupted before its outcome was recorded.
fn mark_inflight(r: &mut Rcpt, now: i64) {
    if let Some(when) = r.inflight {
        notice!(
            "<{}> possible duplicate: an earlier delivery (started {}s ago) was interrupted before its outcome was recorded",
            r.addr,
            now - when
        );
    }
    r.inflight = Some(now);
}

/// Delivers what is due of the locked message `msg`. Bounces it queues are
/// delivered right away, in this process. A held message is left alone,
/// even with `force`.
pub fn run(ctx: &mut Ctx, msg: Locked, force: bool) -> io::Result<()> {
    if msg.env.held.is_some() {
        return Ok(());
    }
    let owner = msg.env.uid;
    run_for(ctx, msg, force, owner)
}

/// [`run`], its log lines about the message of user `owner` (for `-v`: a
/// bounce's lines are about the message that bounced).
fn run_for(ctx: &mut Ctx, msg: Locked, force: bool, owner: u32) -> io::Result<()> {
    let mut w = Work::start(ctx, msg, force, owner)?;
    let mut answer = None;
    while let Some(req) = w.step(ctx, answer.take())? {
        answer = Some(crate::local::deliver_mailbox(
            ctx,
            &w.msg.data,
            &w.msg.env.sender,
            &req.user,
            &req.trace,
            req.check_forward,
        ));
    }
    finish(ctx, w, false).map(drop)
}

/// The most messages one batch takes ([`run_many`]): one mailbox's share
/// of them goes to one `dma-local` run, each message's data file passed
/// as a descriptor.
pub const MAX_BATCH: usize = 64;

/// Delivers what is due of each of the locked messages `msgs` (at most
/// [`MAX_BATCH`]), as [`run`] does one by one, except that their mailbox
/// deliveries are made together: the messages for one mailbox are
/// appended in one `dma-local` run, under one lock, with one fdatasync
/// (see [`crate::local::deliver_mailbox_batch`]), and then each message's
/// outcome is recorded. An error (the spool can not take a state change)
/// leaves the message it is about as it is (queued), lets the others
/// finish, and is returned with that message's id: the caller's run
/// stops.
pub fn run_many(
    ctx: &mut Ctx,
    mut msgs: Vec<Locked>,
    force: bool,
) -> Result<(), (String, io::Error)> {
    // Held messages are never tried, whoever asks (see [`run`]).
    msgs.retain(|m| m.env.held.is_none());
    // The first error; the batch goes on without the message it is about,
    // so that what the others had delivered is recorded (a finished one
    // needs no room: it leaves the queue), and then it ends the run.
    let mut failed: Option<(String, io::Error)> = None;
    let mut works = Vec::with_capacity(msgs.len());
    for msg in msgs {
        let (id, owner) = (msg.env.id.clone(), msg.env.uid);
        match Work::start(ctx, msg, force, owner) {
            Ok(w) => works.push(Some(w)),
            Err(e) => {
                failed.get_or_insert((id, e));
            }
        }
    }
    let mut answers: Vec<Option<crate::local::Mailbox>> = works.iter().map(|_| None).collect();
    let mut routing: Vec<bool> = works.iter().map(|_| true).collect();
    loop {
        // Every message routes on until it needs a mailbox delivery.
        let mut asked: Vec<(usize, MailboxRequest)> = Vec::new();
        for (k, slot) in works.iter_mut().enumerate() {
            let Some(w) = slot.as_mut().filter(|_| routing[k]) else {
                continue;
            };
            match w.step(ctx, answers[k].take()) {
                Ok(Some(req)) => asked.push((k, req)),
                Ok(None) => routing[k] = false,
                Err(e) => {
                    // Left as it is (queued, marked in flight).
                    failed.get_or_insert((w.msg.env.id.clone(), e));
                    *slot = None;
                }
            }
        }
        if asked.is_empty() {
            break;
        }
        // One run per mailbox (and way of asking), in queue order.
        while !asked.is_empty() {
            let (user, check) = (asked[0].1.user.clone(), asked[0].1.check_forward);
            let (group, rest): (Vec<_>, Vec<_>) = asked
                .into_iter()
                .partition(|(_, r)| r.user == user && r.check_forward == check);
            asked = rest;
            crate::logging::set_queue_id(None);
            let items: Vec<crate::local::BatchItem> = group
                .iter()
                .filter_map(|(k, r)| {
                    let w = works[*k].as_ref()?;
                    Some(crate::local::BatchItem {
                        data: &w.msg.data,
                        sender: &w.msg.env.sender,
                        prepend: &r.trace,
                    })
                })
                .collect();
            let results = crate::local::deliver_mailbox_batch(ctx, &user, check, &items);
            for ((k, _), res) in group.iter().zip(results) {
                answers[*k] = Some(res);
            }
        }
    }
    let mut done = Vec::new();
    for w in works.into_iter().flatten() {
        let id = w.msg.env.id.clone();
        match finish(ctx, w, true) {
            Ok(Some(msg)) => done.push(msg),
            Ok(None) => {}
            Err(e) => {
                failed.get_or_insert((id, e));
            }
        }
    }
    remove_in_background(ctx, done);
    failed.map_or(Ok(()), Err)
}

/// The fewest finished messages worth a process of their own to remove
/// ([`remove_in_background`]): a fork costs about what removing a few
/// messages does.
const BACKGROUND_REMOVAL: usize = 8;

/// How many processes may be removing finished messages at once.
const REMOVERS: usize = 2;

/// Removes the finished messages `done` from the queue in a process of
/// its own, so that the run goes on with the next batch meanwhile:
/// freeing files is what a local queue run waits for most (with online
/// discard, each freed file is a request to the disk). That process
/// inherits the messages' locks (their data files) and lets go of them
/// only once they are removed, so nobody takes one in between; its
/// removals are not synced, like ours ([`crate::spool::Spool::remove`]):
/// the run syncs the directory once they are all done. Without a process
/// (fork fails), they are removed here.
fn remove_in_background(ctx: &mut Ctx, done: Vec<Locked>) {
    if done.len() < BACKGROUND_REMOVAL {
        // A process would cost more than it saves.
        for msg in &done {
            remove_done(ctx, &msg.env.id);
        }
        return;
    }
    ctx.wait_removers(REMOVERS - 1);
    match crate::privsep::fork() {
        Ok(crate::privsep::Forked::Child) => {
            // Only the messages' locks: the runner's own lock files (the
            // slot, the waiting runner's, its hop's) are let go of when the
            // runner lets go, whatever we still do.
            use std::os::fd::AsRawFd;
            let keep: Vec<_> = done.iter().map(|m| m.data.as_raw_fd()).collect();
            crate::privsep::close_all_but(&keep);
            for msg in &done {
                remove_done(ctx, &msg.env.id);
            }
            crate::privsep::exit_now(0);
        }
        Ok(crate::privsep::Forked::Parent(pid)) => ctx.removers.push(pid),
        Err(_) => {
            for msg in &done {
                remove_done(ctx, &msg.env.id);
            }
        }
    }
}

/// Removes a finished message; an error is logged, the message then stays
/// queued and is delivered again (a duplicate, never a loss).
fn remove_done(ctx: &Ctx, id: &str) {
    if let Err(e) = ctx.spool.remove(id) {
        crate::logging::set_queue_id(Some(id));
        crate::crit!("can not remove the delivered message from the queue: {e}");
        crate::logging::set_queue_id(None);
    }
}

/// A mailbox delivery that a message's routing asks for ([`Work::step`]).
#[derive(Debug)]
pub struct MailboxRequest {
    /// The mailbox's user.
    pub user: String,
    /// `dma-local` is to read the user's `.forward` first.
    pub check_forward: bool,
    /// Header lines to add (Delivered-To).
    pub trace: Vec<String>,
}

/// The recipient whose mailbox delivery is out, and what routing it again
/// (a `.forward` found) needs.
#[derive(Debug)]
struct Asked {
    user: String,
    uid: u32,
    ancestors: Vec<String>,
}

/// One message being worked on: its due recipients are routed and
/// delivered one by one, in order; a mailbox delivery is handed out to the
/// caller (so that several messages' deliveries to one mailbox can be made
/// together) and its outcome handed back.
pub struct Work {
    msg: Locked,
    /// Which recipients are tried in this run (marked in flight).
    todo: Vec<bool>,
    /// The remote recipients, sent together once the local ones are done.
    remote: Vec<crate::remote::Target>,
    delivered_to: Vec<String>,
    lifetime: i64,
    /// The next recipient to route.
    i: usize,
    /// The mailbox delivery that is out, for recipient `i`.
    asked: Option<Asked>,
    /// Whose message the log lines are about (see [`run_for`]).
    owner: u32,
}

/// How a message's envelope is written before its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Durably ([`crate::spool::Spool::write_env`]): a retry time was
    /// brought back within RETRY_MAX.
    Durable,
    /// Rewritten as a note ([`crate::spool::Spool::write_env_note`]):
    /// only the in-flight marks changed, in a version 1 file.
    Note,
    /// The in-flight marks (since this time) as a note appended to the
    /// file ([`crate::spool::Spool::append_note`]).
    Append(i64),
    /// Not at all: nothing is due.
    None,
}

/// What routing one recipient came to.
enum Flow {
    /// Nothing to record (expanded, or waiting for the remote delivery):
    /// on to the next.
    Next,
    /// Its outcome.
    Done(Outcome),
    /// Its mailbox delivery is to be made.
    Mailbox(MailboxRequest),
}

impl Work {
    /// Takes the locked message `msg` on: marks in flight what is due now
    /// (everything with `force`) before anything is delivered (see the
    /// module doc).
    fn start(ctx: &mut Ctx, msg: Locked, force: bool, owner: u32) -> io::Result<Work> {
        let (w, mark) = Work::plan(ctx, msg, force, owner);
        w.write_mark(ctx, mark)?;
        Ok(w)
    }

    /// Writes the envelope as `mark` says.
    fn write_mark(&self, ctx: &Ctx, mark: Mark) -> io::Result<()> {
        let env = &self.msg.env;
        match mark {
            Mark::Durable => ctx.spool.write_env(env),
            Mark::Note => ctx.spool.write_env_note(env),
            Mark::Append(time) => {
                let todo: Vec<usize> = (0..self.todo.len()).filter(|&i| self.todo[i]).collect();
                ctx.spool
                    .append_note(&env.id, &Envelope::inflight_note(time, &todo))
            }
            Mark::None => Ok(()),
        }
    }

    /// [`Work::start`] but for the writing: says how the envelope, with
    /// its recipients marked in flight, is to be written before anything
    /// is delivered.
    fn plan(ctx: &mut Ctx, mut msg: Locked, force: bool, owner: u32) -> (Work, Mark) {
        about(&msg.env, owner);
        let lifetime = ctx.config.queue_lifetime.as_secs() as i64;
        let retry_max = ctx.config.retry_max.as_secs() as i64;
        let start = now();
        let created = msg.env.created;
        let mut todo = vec![false; msg.env.rcpts.len()];
        let capped = cap_retries(&mut msg.env, start, retry_max);
        for (i, r) in msg.env.rcpts.iter_mut().enumerate() {
            if due(r, force, expired(r, created, lifetime, start), start) {
                crate::logging::set_private(r.parent.is_some());
                mark_inflight(r, start);
                todo[i] = true;
            }
        }
        crate::logging::set_private(false);
        // What matters is that the mark is in the file before anything is
        // delivered, so that a run that dies finds it, and that a spool that
        // cannot take the write stops us first. It is a note appended to the
        // file, not synced: a mark a power loss undoes costs only its
        // "possible duplicate" line, the copies are the same. (A version 1
        // file has no place for notes: it is rewritten, its new file
        // fsynced, so that a power loss leaves the old one or the new one,
        // whole.)
        let mark = if capped {
            Mark::Durable
        } else if !todo.contains(&true) {
            Mark::None
        } else if msg.env.size.is_none() {
            Mark::Note
        } else {
            Mark::Append(start)
        };
        let delivered_to = delivered_to(&msg.data);
        let w = Work {
            msg,
            todo,
            remote: Vec::new(),
            delivered_to,
            lifetime,
            i: 0,
            asked: None,
            owner,
        };
        (w, mark)
    }

    /// Routes and delivers the next recipients, until one needs a mailbox
    /// delivery (returned: the caller makes it and hands its outcome back
    /// as `answer` on the next call) or none is left (`None`).
    pub fn step(
        &mut self,
        ctx: &mut Ctx,
        answer: Option<crate::local::Mailbox>,
    ) -> io::Result<Option<MailboxRequest>> {
        about(&self.msg.env, self.owner);
        if let Some(asked) = self.asked.take() {
            let addr = self.msg.env.rcpts[self.i].addr.clone();
            crate::logging::set_private(self.msg.env.rcpts[self.i].parent.is_some());
            let flow = match answer {
                Some(crate::local::Mailbox::Forward(entries)) => {
                    let route = ctx.expand_forward(
                        &asked.user,
                        asked.uid,
                        entries,
                        &asked.ancestors,
                        &self.delivered_to,
                    );
                    self.take_route(ctx, route, &asked.ancestors)?
                }
                Some(crate::local::Mailbox::Done(outcome, note)) => {
                    if let Some(n) = note {
                        private_note(&addr, &format!("ignoring {n}"));
                    }
                    Flow::Done(outcome)
                }
                None => Flow::Done(Outcome::Deferred(
                    "4.3.0 the mailbox delivery was not made".into(),
                )),
            };
            if let Some(req) = self.after(ctx, flow)? {
                return Ok(Some(req));
            }
        }
        while self.i < self.msg.env.rcpts.len() {
            if !self.todo[self.i] {
                self.i += 1;
                continue;
            }
            let i = self.i;
            let r = &self.msg.env.rcpts[i];
            let addr = r.addr.clone();
            // What aliases and .forward files made of a recipient is not for
            // the submitter's `-v` (see `logging::set_private`).
            crate::logging::set_private(r.parent.is_some());
            let mut ancestors = Vec::new();
            let mut p = r.parent;
            while let Some(j) = p {
                ancestors.push(ctx.local_name(&self.msg.env.rcpts[j].addr));
                p = self.msg.env.rcpts[j].parent;
            }
            ancestors.reverse();
            let origin = self.msg.env.rcpts[i].origin.clone();
            let route = ctx.route(&addr, origin.as_ref(), &ancestors, &self.delivered_to);
            let flow = self.take_route(ctx, route, &ancestors)?;
            if let Some(req) = self.after(ctx, flow)? {
                return Ok(Some(req));
            }
        }
        Ok(None)
    }

    /// Records what routing recipient `i` came to and moves on; hands out a
    /// mailbox delivery.
    fn after(&mut self, ctx: &Ctx, flow: Flow) -> io::Result<Option<MailboxRequest>> {
        match flow {
            Flow::Next => Ok(None),
            Flow::Mailbox(req) => Ok(Some(req)),
            Flow::Done(outcome) => {
                record(ctx, &mut self.msg, self.i, outcome, self.lifetime);
                if self.msg.env.is_done() {
                    self.i = self.msg.env.rcpts.len();
                } else {
                    ctx.spool.write_env(&self.msg.env)?;
                    self.i += 1;
                }
                Ok(None)
            }
        }
    }

    /// Follows `route` for recipient `i` (made from `ancestors`).
    fn take_route(
        &mut self,
        ctx: &mut Ctx,
        route: Route,
        ancestors: &[String],
    ) -> io::Result<Flow> {
        let i = self.i;
        let addr = self.msg.env.rcpts[i].addr.clone();
        let msg = &mut self.msg;
        Ok(match route {
            Route::Expand {
                children,
                kind,
                notes,
            } => {
                for n in &notes {
                    private_note(&addr, n);
                }
                let mut added = Vec::new();
                for c in children {
                    if !msg.env.rcpts.iter().any(|r| r.addr == c.addr) {
                        let mut r = Rcpt::new(c.addr.clone(), Some(i));
                        r.origin = c.origin;
                        // Tried in this run, like its parent.
                        r.inflight = Some(now());
                        msg.env.rcpts.push(r);
                        self.todo.push(true);
                        added.push(c.addr);
                    }
                }
                let how = match kind {
                    Expansion::Alias => "aliased",
                    Expansion::CatchAll => "caught by `*' and sent",
                    Expansion::Forward => "forwarded by .forward",
                    Expansion::Include => "expanded by :include:",
                };
                crate::logging::set_private(true);
                info!("<{addr}> {how} to <{}>", added.join(">, <"));
                msg.env.rcpts[i].state = State::Expanded;
                msg.env.rcpts[i].inflight = None;
                ctx.spool.write_env(&msg.env)?;
                self.i += 1;
                Flow::Next
            }
            Route::Mailbox {
                user,
                uid,
                note,
                check_forward,
            } => {
                if let Some(n) = note {
                    private_note(&addr, &n);
                }
                reserve(ctx, &msg.env, i)?;
                info!("<{addr}> trying delivery");
                let trace = trace_headers(ctx, &msg.env, i, None);
                self.asked = Some(Asked {
                    user: user.clone(),
                    uid,
                    ancestors: ancestors.to_vec(),
                });
                Flow::Mailbox(MailboxRequest {
                    user,
                    check_forward,
                    trace,
                })
            }
            Route::Program { program, origin } => {
                reserve(ctx, &msg.env, i)?;
                info!("<{addr}> trying delivery");
                let owner = match &origin {
                    Origin::Forward(u) | Origin::Alias(u) => format!("{u}@{}", ctx.hostname),
                };
                let trace = trace_headers(ctx, &msg.env, i, Some(&owner));
                let original = bounce::qualify(&msg.env.rcpts[top_of(&msg.env, i)].addr, ctx);
                let call = ProgramCall {
                    program: match &program {
                        Program::Pipe(c) => crate::local::Program::Pipe(c),
                        Program::File(f) => crate::local::Program::File(f),
                    },
                    origin: &origin,
                    sender: &msg.env.sender,
                    recipient: &owner,
                    original: &original,
                    prepend: &trace,
                };
                Flow::Done(crate::local::deliver_program(ctx, &msg.data, &call))
            }
            Route::Remote {
                addr: raddr,
                domain,
            } => {
                // Sent together with the message's other remote recipients,
                // once every local one is done.
                let prepend = trace_headers(ctx, &msg.env, i, None);
                let orcpt = bounce::qualify(&msg.env.rcpts[top_of(&msg.env, i)].addr, ctx);
                self.remote.push(crate::remote::Target {
                    index: i,
                    addr: raddr,
                    domain,
                    prepend,
                    orcpt,
                });
                self.i += 1;
                Flow::Next
            }
            Route::Fail(why) => Flow::Done(Outcome::Failed(why)),
            Route::Defer(why) => Flow::Done(Outcome::Deferred(why)),
        })
    }
}

/// Once every local recipient of `w` is done: sends the remote ones, queues
/// the bounces, and removes the message if nothing is left (or, with
/// `hand_back`, returns it, locked, for the caller to remove); then
/// delivers the bounce it queued.
fn finish(ctx: &mut Ctx, w: Work, hand_back: bool) -> io::Result<Option<Locked>> {
    about(&w.msg.env, w.owner);
    let Work {
        mut msg,
        remote,
        lifetime,
        owner,
        ..
    } = w;
    let data_path = ctx.spool.data_path(&msg.env.id);
    if !remote.is_empty() {
        // The session's lines name the hosts of expanded recipients too.
        crate::logging::set_private(
            remote
                .iter()
                .any(|t| msg.env.rcpts[t.index].parent.is_some()),
        );
        // Signed once, before the first transaction; the signatures are in
        // the envelope, durably, before anything is sent, so that every
        // attempt sends the same bytes (see `dkim`).
        let unusable_key = match crate::dkim::plan(&ctx.config, &msg.data, &msg.env) {
            crate::dkim::Plan::Signed(headers) => {
                msg.env.dkim = headers;
                ctx.spool.write_env(&msg.env)?;
                None
            }
            crate::dkim::Plan::Defer(why) => Some(why),
            crate::dkim::Plan::Unsigned | crate::dkim::Plan::Stored => None,
        };
        // Each recipient's outcome may come with a server's reply.
        ctx.spool.reserve(&msg.env, 1024 * remote.len())?;
        // Marked in flight before the first byte went out (above): if this
        // process dies after a server took the message and before its reply
        // is recorded, the next run sends it again (a duplicate, never a
        // loss) and says so.
        let results = match unusable_key {
            None => crate::remote::deliver(
                ctx,
                &msg.data,
                &msg.env.sender,
                &msg.env.dsn,
                &msg.env.dkim,
                &remote,
            ),
            Some(why) => crate::remote::all(&remote, Outcome::Deferred(why)),
        };
        for r in results {
            // What a server said (and TLS or DNS errors that quote it)
            // reaches the queue with its control characters escaped.
            let visible = |s: String| crate::escape::controls(&s).into_owned();
            msg.env.rcpts[r.index].mta = r.mta.map(visible);
            msg.env.rcpts[r.index].smtp = r.smtp.map(visible);
            record(ctx, &mut msg, r.index, r.outcome, lifetime);
        }
        if !msg.env.is_done() {
            ctx.spool.write_env(&msg.env)?;
        }
    }
    let failed: Vec<usize> = (0..msg.env.rcpts.len())
        .filter(|&i| msg.env.rcpts[i].state == State::Failed { bounced: false })
        .collect();
    crate::logging::set_private(false);
    let mut bounce_msg = None;
    if !failed.is_empty() {
        bounce_msg = bounce::queue(ctx, &msg.env, &data_path, &failed)?;
        for &i in &failed {
            msg.env.rcpts[i].state = State::Failed { bounced: true };
        }
    }
    let mut finished = None;
    if msg.env.is_done() {
        if !hand_back {
            ctx.spool.remove(&msg.env.id)?;
        }
        info!("finished with the message");
        finished = Some(msg);
    } else if !failed.is_empty() {
        ctx.spool.write_env(&msg.env)?;
    }
    let finished = finished.filter(|_| hand_back);
    if let Some(b) = bounce_msg {
        run_for(ctx, b, true, owner)?;
    }
    crate::logging::set_queue_id(None);
    Ok(finished)
}

/// Takes the room for recording the outcome of delivering recipient `i`
/// of `env` ([`crate::spool::Spool::reserve`]), when one is to be
/// recorded: not when `i` is the last recipient not done, since the
/// message then leaves the queue if it is delivered, which takes no room
/// (and if it is not, it was not delivered: trying again is no
/// duplicate).
fn reserve(ctx: &Ctx, env: &Envelope, i: usize) -> io::Result<()> {
    let others = env
        .rcpts
        .iter()
        .enumerate()
        .any(|(j, r)| j != i && !r.state.is_final());
    if others {
        ctx.spool.reserve(env, 0)
    } else {
        Ok(())
    }
}

/// The log lines that follow are about message `env` of user `owner`.
fn about(env: &Envelope, owner: u32) {
    crate::logging::set_queue_id(Some(&env.id));
    crate::logging::set_message_owner(Some(owner));
}

/// Logs a note of the router about `addr`: what it made of an aliases or
/// `.forward` entry (a malformed one quoted, an unsafe file). Such notes
/// are private (see `logging::set_private`): another user's `.forward` is
/// not the submitter's to read.
fn private_note(addr: &str, n: &str) {
    let was = crate::logging::set_private(true);
    warning!("<{addr}>: {n}");
    crate::logging::set_private(was);
}

/// The index of the top-level recipient `i` was expanded from.
fn top_of(env: &Envelope, mut i: usize) -> usize {
    while let Some(p) = env.rcpts[i].parent {
        i = p;
    }
    i
}

/// The `Delivered-To:` lines for delivering recipient `i`: one for each
/// `.forward` it passed through (except a user's own mailbox copy), and
/// `owner` first for a command or file.
fn trace_headers(ctx: &Ctx, env: &Envelope, i: usize, owner: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = owner
        .map(|o| format!("Delivered-To: {o}"))
        .into_iter()
        .collect();
    let mut j = Some(i);
    while let Some(k) = j {
        let r = &env.rcpts[k];
        if let Some(Origin::Forward(u)) = &r.origin {
            let own_copy = k == i && r.addr == format!("\\{u}");
            let line = format!("Delivered-To: {u}@{}", ctx.hostname);
            if !own_copy && !out.contains(&line) {
                out.push(line);
            }
        }
        j = r.parent;
    }
    out
}

/// The `Delivered-To:` addresses in the header of the message, lower case.
fn delivered_to(data: &std::fs::File) -> Vec<String> {
    use std::io::{BufRead, Seek};
    let mut out = Vec::new();
    let Ok(mut f) = data.try_clone() else {
        return out;
    };
    if f.rewind().is_err() {
        return out;
    }
    let mut r = std::io::BufReader::new(f);
    let mut line = String::new();
    while matches!(r.read_line(&mut line), Ok(n) if n > 0) && line != "\n" {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("delivered-to")
        {
            out.push(crate::address::strip_brackets(value.trim()).to_ascii_lowercase());
        }
        line.clear();
    }
    out
}

/// Applies one outcome to recipient `i`, with the log line dma writes.
fn record(ctx: &Ctx, msg: &mut Locked, i: usize, outcome: Outcome, lifetime: i64) {
    let outcome = match outcome {
        Outcome::Deferred(why) => Outcome::Deferred(crate::escape::controls(&why).into_owned()),
        Outcome::Failed(why) => Outcome::Failed(crate::escape::controls(&why).into_owned()),
        o => o,
    };
    let created = msg.env.created;
    let r = &mut msg.env.rcpts[i];
    crate::logging::set_private(r.parent.is_some());
    r.attempts = r.attempts.saturating_add(1);
    r.inflight = None;
    let at = now();
    match outcome {
        Outcome::Delivered => {
            tally_mut().delivered += 1;
            info!("<{}> delivery successful", r.addr);
            r.state = State::Delivered;
            r.reply = None;
        }
        Outcome::Deferred(why) if expired(r, created, lifetime, at) => {
            tally_mut().failed += 1;
            error!(
                "<{}> delivery failed: giving up after {}: {why}",
                r.addr,
                crate::config::duration::format(Duration::from_secs(lifetime as u64))
            );
            r.state = State::Failed { bounced: false };
            r.reply = Some(format!(
                "4.4.7 could not deliver for {}; last error: {why}",
                crate::config::duration::format(Duration::from_secs(lifetime as u64))
            ));
        }
        Outcome::Deferred(why) => {
            tally_mut().deferred += 1;
            let age = Duration::from_secs(at.saturating_sub(created).max(0) as u64);
            let wait = backoff(ctx.config.retry_min, ctx.config.retry_max, age);
            notice!(
                "<{}> delivery deferred, next try in {}s: {why}",
                r.addr,
                wait.as_secs()
            );
            r.state = State::Deferred;
            r.next_try = at + wait.as_secs() as i64;
            r.reply = Some(why);
        }
        Outcome::Failed(why) => {
            tally_mut().failed += 1;
            error!("<{}> delivery failed: {why}", r.addr);
            r.state = State::Failed { bounced: false };
            r.reply = Some(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_age_and_stays_in_bounds() {
        let (min, max) = (Duration::from_secs(300), Duration::from_secs(4 * 3600));
        let s = Duration::from_secs;
        for age in (0..100_000).step_by(997) {
            let d = backoff(min, max, s(age));
            assert!(d >= min && d <= max, "{age}: {d:?}");
        }
        // Young: RETRY_MIN, however often it was tried.
        assert!(backoff(min, max, s(6)) <= s(360));
        // As old as it is, give or take the jitter.
        let d = backoff(min, max, s(2400));
        assert!(d >= s(1920) && d <= s(2880), "{d:?}");
        assert!(backoff(min, max, s(10 * 86400)) >= max.mul_f64(0.8));
    }

    fn rcpt(state: State, attempts: u32, next_try: i64) -> Rcpt {
        let mut r = Rcpt::new("bob", None);
        (r.state, r.attempts, r.next_try) = (state, attempts, next_try);
        r
    }

    #[test]
    fn due_rules() {
        assert!(due(&rcpt(State::Pending, 0, 0), false, false, 100));
        assert!(!due(&rcpt(State::Deferred, 1, 200), false, false, 100));
        assert!(due(&rcpt(State::Deferred, 1, 200), true, false, 100));
        assert!(due(&rcpt(State::Deferred, 1, 200), false, true, 100));
        assert!(!due(&rcpt(State::Delivered, 1, 0), true, true, 100));
    }

    #[test]
    fn age_alone_does_not_expire() {
        let day = 86400;
        // A clock stepped 6 days forward: a minute-old message with one
        // failed attempt is not expired.
        assert!(!expired(&rcpt(State::Deferred, 1, 0), 0, 5 * day, 6 * day));
        assert!(!expired(&rcpt(State::Deferred, 2, 0), 0, 5 * day, 6 * day));
        assert!(expired(&rcpt(State::Deferred, 3, 0), 0, 5 * day, 6 * day));
        assert!(!expired(&rcpt(State::Deferred, 9, 0), 0, 5 * day, 4 * day));
    }

    #[test]
    fn retry_times_are_capped_and_the_cap_is_kept() {
        let mut env = Envelope::parse(
            "dma-rs-queue 1\nid x\ncreated 0\nsender \nuser u\nuid 1\n\
             rcpt a\nstate deferred\nattempts 1\nnext-try 90000\n\
             rcpt b\nstate deferred\nattempts 1\nnext-try 500\n",
        )
        .unwrap();
        // The clock went back a day: a try due at 90000 is due by 100 + max.
        assert!(has_due(&env, 100, 1000, 4 * 3600));
        assert!(cap_retries(&mut env, 100, 4 * 3600));
        assert_eq!(env.rcpts[0].next_try, 100 + 4 * 3600);
        assert_eq!(env.rcpts[1].next_try, 500);
        assert!(!cap_retries(&mut env, 200, 4 * 3600));
        assert!(!has_due(&env, 200, 1000, 4 * 3600));
    }
}
