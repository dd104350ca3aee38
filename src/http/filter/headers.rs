//! Header edits as an overlay: configured add/remove operations are compiled once into a
//! [`HeaderPlan`], and an encoder applies a request's plans while it writes the head, so
//! a message nobody edits costs nothing and an edited one allocates nothing.
//!
//! Semantics follow Envoy's `request_headers_to_add` / `_to_remove` (and the response
//! pair): within one level, removals apply first, then additions in order, each with its
//! `append_action`; levels apply in order (the header-mutation filter, then route,
//! virtual host, route table). A plan is compiled per name for both cases an operation
//! can depend on (the header present or absent when the plan runs), so evaluating it
//! per request is a presence check and a few comparisons.

use std::cell::OnceCell;
use std::sync::Arc;

use super::set_headers::SetHeaders;
use crate::http::stamp::Stamp;

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Add a value, keeping existing ones (Envoy's default).
    AppendIfExistsOrAdd,
    /// Add only if the header is absent.
    AddIfAbsent,
    /// Replace every existing value, or add.
    OverwriteIfExistsOrAdd,
    /// Replace existing values; do nothing if absent.
    OverwriteIfExists,
}

/// One configured addition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAdd {
    /// Lower-case.
    pub name: String,
    pub value: String,
    pub action: AppendAction,
}

/// The configured edits of one level for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderOps {
    pub add: Vec<HeaderAdd>,
    /// Lower-case names.
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// What a plan does to one header name, given whether it is present when the plan runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Branch {
    /// Drop every value present before this plan (incoming or added by earlier plans).
    discard: bool,
    /// Values this plan adds, in order.
    values: Vec<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NameOps {
    name: Arc<str>,
    if_present: Branch,
    if_absent: Branch,
}

/// Compiled edits of one or more levels, for one direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderPlan {
    names: Vec<NameOps>,
}

impl HeaderPlan {
    /// Compiles levels applied in order (e.g. route, virtual host, route table).
    pub fn compile<'a>(levels: impl IntoIterator<Item = &'a HeaderOps> + Clone) -> HeaderPlan {
        let mut names: Vec<Arc<str>> = Vec::new();
        for level in levels.clone() {
            let touched = level
                .remove
                .iter()
                .map(String::as_str)
                .chain(level.add.iter().map(|a| a.name.as_str()));
            for n in touched {
                if !names.iter().any(|m| &**m == n) {
                    names.push(n.into());
                }
            }
        }
        let names = names
            .into_iter()
            .map(|name| NameOps {
                if_present: simulate(&name, true, levels.clone()),
                if_absent: simulate(&name, false, levels.clone()),
                name,
            })
            .collect();
        HeaderPlan { names }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Runs the levels' operations on one name from a start state; values present at the
/// start are represented only by whether they survive.
fn simulate<'a>(
    name: &str,
    present: bool,
    levels: impl IntoIterator<Item = &'a HeaderOps>,
) -> Branch {
    let mut out = Branch::default();
    let mut start_kept = present;
    let discard = |out: &mut Branch, start_kept: &mut bool| {
        out.discard = true;
        out.values.clear();
        *start_kept = false;
    };
    for level in levels {
        if level.remove.iter().any(|r| r == name) {
            discard(&mut out, &mut start_kept);
        }
        for a in level.add.iter().filter(|a| a.name == name) {
            let exists = start_kept || !out.values.is_empty();
            match a.action {
                AppendAction::AppendIfExistsOrAdd => {}
                AppendAction::AddIfAbsent if exists => continue,
                AppendAction::AddIfAbsent => {}
                AppendAction::OverwriteIfExistsOrAdd => discard(&mut out, &mut start_kept),
                AppendAction::OverwriteIfExists if exists => discard(&mut out, &mut start_kept),
                AppendAction::OverwriteIfExists => continue,
            }
            out.values.push(a.value.as_str().into());
        }
    }
    out
}

/// Header-mutation filters one chain may hold (each adds a plan to a message's edits).
pub const MAX_HEADER_MUTATION_FILTERS: usize = 3;

/// Most plans one message carries: the header-mutation filters' and the route's, the
/// local rate limit's (its limited reply's or not-enforced request's headers), and the
/// connection manager's own (`server`, or the sanitizing of `x-envoy-*` headers).
const MAX_PLANS: usize = 6;
const _: () = assert!(MAX_PLANS >= MAX_HEADER_MUTATION_FILTERS + 3);

/// The plans that apply to one message, in order, and the proxy's own per-message
/// headers (`http::own_headers`). Copyable; borrows the config.
#[derive(Clone, Copy, Default)]
pub struct Edits<'c> {
    plans: [Option<&'c HeaderPlan>; MAX_PLANS],
    /// Written after the plans' additions; replaces incoming headers of its names.
    pub stamp: Stamp,
    /// Headers a filter set for this stream (`set_headers`): written last, replacing
    /// incoming and planned values of their names. `None` unless a filter set one.
    pub set: Option<&'c SetHeaders>,
    /// A plan a filter made for this stream from what a service answered (ext_proc's
    /// header mutations), applied after the configured plans. Read when the message is
    /// encoded, so a filter may fill it after the edits were copied (the response side).
    pub dynamic: Option<&'c OnceCell<HeaderPlan>>,
}

impl<'c> Edits<'c> {
    /// No edits (the common case: nothing to look up while encoding).
    pub fn none() -> Edits<'c> {
        Edits::default()
    }

    /// Adds a plan to apply after the ones already held (at most `MAX_PLANS`: the config
    /// allows no more header-mutation filters than fit). Empty plans are skipped.
    pub fn then(mut self, plan: &'c HeaderPlan) -> Edits<'c> {
        if plan.is_empty() {
            return self;
        }
        if let Some(slot) = self.plans.iter_mut().find(|p| p.is_none()) {
            *slot = Some(plan);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.plans.iter().all(Option::is_none)
            && self
                .dynamic
                .is_none_or(|d| d.get().is_none_or(HeaderPlan::is_empty))
            && self.stamp.is_empty()
            && self.set.is_none_or(SetHeaders::is_empty)
    }

    /// The edits for a reply the proxy makes itself (no upstream service time).
    pub fn local_reply(mut self) -> Edits<'c> {
        self.stamp = self.stamp.local_reply();
        self
    }

    fn plans(&self) -> impl Iterator<Item = &'c HeaderPlan> + '_ {
        self.plans
            .iter()
            .flatten()
            .copied()
            .chain(self.dynamic.and_then(OnceCell::get))
    }

    /// The branch each plan takes for `name`, given whether it was present on arrival.
    fn branches<'s>(
        &'s self,
        name: &'s str,
        incoming: bool,
    ) -> impl Iterator<Item = &'c Branch> + 's {
        let mut present = incoming;
        self.plans().filter_map(move |p| {
            let ops = p.names.iter().find(|n| n.name.eq_ignore_ascii_case(name))?;
            let b = if present {
                &ops.if_present
            } else {
                &ops.if_absent
            };
            present = (present && !b.discard) || !b.values.is_empty();
            Some(b)
        })
    }

    /// True if incoming headers called `name` are written on (none of the plans dropped
    /// them). `present` says whether the message carries the header at all.
    pub fn keeps(&self, name: &str) -> bool {
        self.is_empty()
            || (self.branches(name, true).all(|b| !b.discard)
                && !self.stamp.replaces(name)
                && !self.set.is_some_and(|s| s.has(name)))
    }

    /// Calls `emit` for every header the plans add, after the message's own headers.
    /// `has` tells whether the message arrived with a header of that name.
    pub fn for_each_added(&self, has: impl Fn(&str) -> bool, mut emit: impl FnMut(&str, &str)) {
        match self.set {
            None => self.for_each_planned(&has, &mut emit),
            // A set header replaces what the plans add under its name.
            Some(set) => self.for_each_planned(&has, |n, v| {
                if !set.has(n) {
                    emit(n, v)
                }
            }),
        }
        self.stamp.for_each(has, &mut emit);
        if let Some(set) = self.set {
            set.for_each(emit);
        }
    }

    /// `for_each_added` for the plans only.
    fn for_each_planned(&self, has: impl Fn(&str) -> bool, mut emit: impl FnMut(&str, &str)) {
        for (i, plan) in self.plans().enumerate() {
            for ops in &plan.names {
                // A name is emitted once, where it first appears in the plans.
                let first = self
                    .plans()
                    .take(i)
                    .all(|p| !p.names.iter().any(|n| n.name == ops.name));
                if !first {
                    continue;
                }
                // Values added before the last plan that discarded are gone.
                let mut branches: [Option<&Branch>; MAX_PLANS + 1] = [None; MAX_PLANS + 1];
                for (slot, b) in branches
                    .iter_mut()
                    .zip(self.branches(&ops.name, has(&ops.name)))
                {
                    *slot = Some(b);
                }
                let last_discard = branches
                    .iter()
                    .rposition(|b| b.is_some_and(|b| b.discard))
                    .unwrap_or(0);
                for b in branches.iter().skip(last_discard).flatten() {
                    for v in &b.values {
                        emit(&ops.name, v);
                    }
                }
            }
        }
    }
}

impl Edits<'_> {
    /// Applies the edits to an HTTP/2 (or `http`) header map in place: values the plans
    /// drop are removed, added ones appended. Allocates only when there are edits.
    pub fn apply_to_map(&self, map: &mut http::HeaderMap) {
        if self.is_empty() {
            return;
        }
        // Presence is decided on the message as it arrived, before any removal.
        let mut present: u64 = 0;
        let mut names = self.plans().flat_map(|p| p.names.iter());
        for (i, ops) in names.by_ref().enumerate().take(64) {
            if map.contains_key(&*ops.name) {
                present |= 1 << i;
            }
        }
        let was_present = |name: &str| {
            self.plans()
                .flat_map(|p| p.names.iter())
                .take(64)
                .position(|n| &*n.name == name)
                .is_some_and(|i| present & (1 << i) != 0)
        };
        for ops in self.plans().flat_map(|p| p.names.iter()) {
            if map.contains_key(&*ops.name) && !self.keeps(&ops.name) {
                map.remove(&*ops.name);
            }
        }
        self.for_each_planned(was_present, |name, value| {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                map.append(n, v);
            }
        });
        self.stamp.apply_to_map(map);
        if let Some(set) = self.set {
            set.apply_to_map(map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str, value: &str, action: AppendAction) -> HeaderAdd {
        HeaderAdd {
            name: name.into(),
            value: value.into(),
            action,
        }
    }

    /// Applies edits to a header list the way an encoder does.
    fn apply(edits: Edits<'_>, incoming: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = incoming
            .iter()
            .filter(|(n, _)| edits.keeps(n))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        edits.for_each_added(
            |n| incoming.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)),
            |n, v| out.push((n.into(), v.into())),
        );
        out
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn append_actions_follow_envoy() {
        use AppendAction::*;
        let ops = HeaderOps {
            add: vec![
                add("x-a", "1", AppendIfExistsOrAdd),
                add("x-b", "2", AddIfAbsent),
                add("x-c", "3", OverwriteIfExistsOrAdd),
                add("x-d", "4", OverwriteIfExists),
            ],
            remove: vec!["x-gone".into()],
        };
        let plan = HeaderPlan::compile([&ops]);
        let e = Edits::none().then(&plan);
        let incoming = [
            ("X-A", "0"),
            ("x-b", "0"),
            ("x-c", "0"),
            ("x-gone", "0"),
            ("keep", "k"),
        ];
        assert_eq!(
            apply(e, &incoming),
            pairs(&[
                ("X-A", "0"),
                ("x-b", "0"),
                ("keep", "k"),
                ("x-a", "1"),
                ("x-c", "3"),
            ])
        );
        assert_eq!(
            apply(e, &[("keep", "k")]),
            pairs(&[("keep", "k"), ("x-a", "1"), ("x-b", "2"), ("x-c", "3")])
        );
    }

    #[test]
    fn levels_apply_in_order_and_later_removals_win() {
        use AppendAction::*;
        let route = HeaderOps {
            add: vec![add("x-v", "route", AppendIfExistsOrAdd)],
            remove: vec![],
        };
        let vhost = HeaderOps {
            add: vec![add("x-v", "vhost", AddIfAbsent)],
            remove: vec![],
        };
        let table = HeaderOps {
            add: vec![],
            remove: vec!["x-v".into()],
        };
        // route adds, vhost sees it present and skips.
        let p = HeaderPlan::compile([&route, &vhost]);
        assert_eq!(
            apply(Edits::none().then(&p), &[]),
            pairs(&[("x-v", "route")])
        );
        // A later level's removal drops what earlier levels added.
        let p = HeaderPlan::compile([&route, &vhost, &table]);
        assert_eq!(apply(Edits::none().then(&p), &[("x-v", "in")]), vec![]);
    }

    #[test]
    fn header_maps_get_the_same_edits() {
        use AppendAction::*;
        let ops = HeaderOps {
            add: vec![
                add("x-a", "1", AppendIfExistsOrAdd),
                add("x-b", "2", AddIfAbsent),
                add("x-c", "3", OverwriteIfExistsOrAdd),
            ],
            remove: vec!["x-gone".into()],
        };
        let plan = HeaderPlan::compile([&ops]);
        let mut map = http::HeaderMap::new();
        for (n, v) in [("x-a", "0"), ("x-b", "0"), ("x-c", "0"), ("x-gone", "0")] {
            map.append(n, v.parse().unwrap());
        }
        Edits::none().then(&plan).apply_to_map(&mut map);
        let got =
            |n: &str| -> Vec<&str> { map.get_all(n).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(got("x-a"), vec!["0", "1"]);
        assert_eq!(got("x-b"), vec!["0"]);
        assert_eq!(got("x-c"), vec!["3"]);
        assert!(got("x-gone").is_empty());
    }

    #[test]
    fn two_plans_chain_like_one() {
        use AppendAction::*;
        let filter = HeaderOps {
            add: vec![add("x-f", "filter", OverwriteIfExistsOrAdd)],
            remove: vec![],
        };
        let route = HeaderOps {
            add: vec![add("x-f", "route", OverwriteIfExists)],
            remove: vec![],
        };
        let (pf, pr) = (
            HeaderPlan::compile([&filter]),
            HeaderPlan::compile([&route]),
        );
        let e = Edits::none().then(&pf).then(&pr);
        assert_eq!(apply(e, &[("x-f", "in")]), pairs(&[("x-f", "route")]));
        assert_eq!(apply(e, &[]), pairs(&[("x-f", "route")]));
        let none = HeaderPlan::default();
        let e = Edits::none().then(&none);
        assert!(e.is_empty() && e.keeps("anything"));
    }
}
