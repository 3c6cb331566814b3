//! The reconciler: reads what the kernel has, diffs it against the compiled rule set and
//! applies only the difference, in an order that never leaves a packet without a path:
//! nft first (one atomic transaction; if it fails nothing else was touched), then HTB,
//! then new and moved routes, then rules, then stale rules and routes, then conntrack
//! entries of flows that changed line.
//!
//! A new rule set that differs from the one in force only in some routes (the
//! controller's usual push: a class moves line for some destinations) takes the
//! incremental road: only those routes are validated, compiled and replaced over
//! rtnetlink, and only their flows are cleared over ctnetlink; nothing else is read or
//! diffed. Local failover recompiles with the dead line avoided and replaces only the
//! routes that differ from what this process last installed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wansteer_wire::ruleset::RuleSet;

use super::conntrack::{ConntrackSocket, FlowIndex};
use super::desired::{
    DesiredState, RouteChanges, compile, compile_nexthops, compile_route, route_changes,
};
use super::failover::{FailoverChange, FailoverState, LineEvent};
use super::htb::TcCommand;
use super::kernel::{Kernel, KernelError};
use super::moved::{MovedFlows, conntrack_deletes, moved_flows};
use super::netlink::{NetlinkError, RouteSocket, route_message, rule_message, tc_request};
use super::nexthop::{self, Nexthop, nexthop_ids};
use super::nft::{FlowKey, NftListing};
use super::routing::{self, IpRule, RouteKey, RouteTarget};
use super::validate::RuleSetError;
use super::validate::validate_route;
use super::{CLASS_MARK_MASK, HTB_MAJOR, NFT_TABLE, htb, nft};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::RouteNetlinkMessage;

/// Why applying failed. A refused rule set changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("rule set refused: {0}")]
    RuleSet(#[from] RuleSetError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("route change over netlink failed: {0}")]
    Netlink(String),
    #[error("clearing moved flows over ctnetlink failed: {0}")]
    Conntrack(String),
    #[error("no rule set applied yet")]
    NoRuleSet,
    #[error("unknown class `{0}`")]
    UnknownClass(String),
}

/// What one apply changed (all zero when the kernel already matched).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub nft_commands: usize,
    pub qdisc_commands: usize,
    pub rule_commands: usize,
    pub route_commands: usize,
    /// Nexthop objects created, replaced (a failover) or deleted.
    pub nexthop_commands: usize,
    pub flows_moved: Vec<MovedFlows>,
    pub conntrack_entries_deleted: u64,
    /// Every (class, destination) now carried by a backup because its primary is down,
    /// with the line carrying it: what the agent tells the controller after failing over.
    pub on_backup: Vec<OnBackup>,
}

/// A (class, destination) failed over locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnBackup {
    pub class: String,
    pub destination: ipnet::IpNet,
    pub line: String,
}

fn conntrack_failed(error: NetlinkError) -> DataplaneError {
    DataplaneError::Conntrack(error.to_string())
}

fn on_backup(desired: &DesiredState) -> Vec<OnBackup> {
    desired
        .placements
        .iter()
        .filter(|(_, placement)| placement.failed_over)
        .map(|((class, destination), placement)| OnBackup {
            class: class.clone(),
            destination: *destination,
            line: placement.line.clone(),
        })
        .collect()
}

impl ApplyReport {
    /// Number of kernel changes made.
    pub fn changes(&self) -> usize {
        self.nft_commands
            + self.qdisc_commands
            + self.rule_commands
            + self.route_commands
            + self.nexthop_commands
            + self.flows_moved.len()
    }
}

/// What `cleanup` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    pub nft_table: bool,
    pub rules: usize,
    pub routes: usize,
    pub nexthops: usize,
    pub qdiscs: usize,
}

/// The kernel as the listings show it (only what wansteer owns).
#[derive(Debug, Clone, Default)]
pub struct KernelState {
    pub nft: Option<NftListing>,
    pub rules: BTreeSet<IpRule>,
    pub routes: BTreeMap<RouteKey, RouteTarget>,
    pub nexthops: BTreeMap<u32, Nexthop>,
    pub shapers: BTreeMap<String, htb::ListedShaper>,
    /// Interface indexes by name.
    pub interfaces: BTreeMap<String, u32>,
}

impl KernelState {
    /// Reads everything wansteer owns (nft through `nft -j list`, the rest as rtnetlink
    /// dumps); `devices` are also listed when not (yet) ours.
    pub fn read(
        kernel: &Kernel,
        socket: &mut RouteSocket,
        devices: &BTreeSet<String>,
    ) -> Result<Self, KernelError> {
        let nft = kernel
            .nft_list_table(NFT_TABLE)?
            .map(|listing| NftListing::parse(&listing));
        let interfaces = socket.links()?;
        let names: BTreeMap<u32, String> = interfaces
            .iter()
            .map(|(name, index)| (*index, name.clone()))
            .collect();
        let rules = socket.rules()?;
        let nexthops = socket.nexthops(&names)?;
        let mut routes = socket.routes(&names)?;
        // Where a route through a nexthop goes is the nexthop's business (the kernel
        // lists it with the route only in nexthop compat mode).
        for target in routes.values_mut() {
            if let Some(nexthop) = target.nexthop.and_then(|id| nexthops.get(&id)) {
                target.via = nexthop.via;
                target.device = nexthop.device.clone();
            }
        }
        let root = u32::from(HTB_MAJOR) << 16;
        let mut roots = BTreeMap::new();
        for qdisc in socket.qdiscs()? {
            if qdisc.kind == "htb"
                && qdisc.handle == root
                && qdisc.parent == u32::MAX
                && let Some(name) = names.get(&qdisc.index)
            {
                let default = htb::parse_qdisc_options(&qdisc.options).unwrap_or(0);
                roots.insert(name.clone(), (qdisc.index, default));
            }
        }
        let mut shapers = BTreeMap::new();
        for device in roots.keys().chain(devices.iter()) {
            let listed = match roots.get(device) {
                Some((index, default)) => htb::ListedShaper {
                    root_default: Some(*default),
                    classes: socket
                        .classes(*index)?
                        .into_iter()
                        .filter(|class| class.kind == "htb" && class.handle >> 16 == root >> 16)
                        .filter_map(|class| {
                            let listed = htb::parse_class_options(&class.options, class.parent)?;
                            Some((class.handle as u16, listed))
                        })
                        .collect(),
                },
                None => htb::ListedShaper::default(),
            };
            shapers.insert(device.clone(), listed);
        }
        Ok(KernelState {
            nft,
            rules,
            routes,
            nexthops,
            shapers,
            interfaces,
        })
    }
}

/// Sends HTB changes over `socket` in their order; deletes tolerate what is already gone.
fn apply_tc(
    socket: &mut RouteSocket,
    commands: &[TcCommand],
    interfaces: &BTreeMap<String, u32>,
) -> Result<(), KernelError> {
    let mut run = Vec::new();
    let mut run_deletes = false;
    for command in commands {
        let index = *interfaces
            .get(command.device())
            .ok_or_else(|| NetlinkError::UnknownInterface(command.device().to_string()))?;
        if command.is_delete() != run_deletes && !run.is_empty() {
            socket.execute(&std::mem::take(&mut run), run_deletes)?;
        }
        run_deletes = command.is_delete();
        run.push(tc_request(command, index));
    }
    socket.execute(&run, run_deletes)?;
    Ok(())
}

fn rule_requests<'a>(
    rules: impl IntoIterator<Item = &'a IpRule>,
    add: bool,
) -> Vec<(RouteNetlinkMessage, u16)> {
    rules
        .into_iter()
        .map(|rule| {
            let message = rule_message(rule);
            if add {
                (
                    RouteNetlinkMessage::NewRule(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
            } else {
                (RouteNetlinkMessage::DelRule(message), 0)
            }
        })
        .collect()
}

fn route_deletes<'a>(
    keys: impl IntoIterator<Item = &'a RouteKey>,
) -> Vec<(RouteNetlinkMessage, u16)> {
    keys.into_iter()
        .map(|key| (RouteNetlinkMessage::DelRoute(route_message(key, None)), 0))
        .collect()
}

/// A new rule set that differs only in routes: which, and the nexthop ids of its chains.
#[derive(Debug)]
struct RouteDelta {
    changes: RouteChanges,
    nexthop_ids: BTreeMap<(routing::Family, nexthop::Chain), u32>,
}

/// The agent's data plane: one owner of all kernel changes.
#[derive(Debug)]
pub struct Dataplane {
    kernel: Kernel,
    failover: FailoverState,
    ruleset: Option<RuleSet>,
    /// Routes as this process last installed them (the failover fast path diffs these).
    routes: BTreeMap<RouteKey, RouteTarget>,
    /// Nexthops as this process last installed them.
    nexthops: BTreeMap<u32, Nexthop>,
    /// The state compiled from `ruleset` with `applied_avoided` lines avoided; a new rule
    /// set that differs from it only in routes takes a fast path.
    applied: Option<DesiredState>,
    applied_avoided: BTreeSet<String>,
    /// ctnetlink for moved flows (opened on first use).
    conntrack_socket: Option<ConntrackSocket>,
    /// The conntrack entries that carry a class, from events (started by the first full
    /// apply); without it moved flows are found by a dump.
    flow_index: Option<FlowIndex>,
    /// rtnetlink for the fast path (opened on first use; `ip -batch` if it cannot be).
    route_socket: Option<RouteSocket>,
    /// Interface indexes by name, for netlink route messages.
    interfaces: BTreeMap<String, u32>,
}

impl Dataplane {
    pub fn new(kernel: Kernel, failover: FailoverState) -> Self {
        Dataplane {
            kernel,
            failover,
            ruleset: None,
            routes: BTreeMap::new(),
            nexthops: BTreeMap::new(),
            applied: None,
            applied_avoided: BTreeSet::new(),
            conntrack_socket: None,
            flow_index: None,
            route_socket: None,
            interfaces: BTreeMap::new(),
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The rule set in force.
    pub fn ruleset(&self) -> Option<&RuleSet> {
        self.ruleset.as_ref()
    }

    /// How many classed conntrack entries the event-fed index holds; `None` while it
    /// is being filled (in the background after the first full apply) or when there is
    /// none (moves then find their flows by a dump).
    pub fn indexed_flows(&self) -> Option<usize> {
        self.flow_index.as_ref().and_then(FlowIndex::ready_len)
    }

    /// Lines currently routed around.
    pub fn avoided_lines(&self) -> &BTreeSet<String> {
        self.failover.avoided()
    }

    /// Compiles and checks a rule set against this host without changing anything.
    pub fn check(&mut self, ruleset: &RuleSet) -> Result<DesiredState, DataplaneError> {
        let desired = compile(ruleset, self.failover.avoided())?;
        // Interfaces already in force were checked when they came in; a vanished one
        // shows up as a failing route replace.
        let known = self.ruleset.as_ref().map(|current| &current.lines);
        let unknown: Vec<_> = ruleset
            .lines
            .iter()
            .filter(|line| {
                known.is_none_or(|lines| lines.iter().all(|l| l.interface != line.interface))
            })
            .collect();
        if unknown.is_empty() {
            return Ok(desired);
        }
        self.interfaces = self.socket()?.links().map_err(KernelError::from)?;
        for line in unknown {
            if !self.interfaces.contains_key(&line.interface) {
                return Err(RuleSetError::MissingInterface {
                    line: line.name.clone(),
                    interface: line.interface.clone(),
                }
                .into());
            }
        }
        Ok(desired)
    }

    /// Makes the kernel match `ruleset` (with failed lines still avoided). A refused rule
    /// set or a failing nft transaction leaves the previous state in place.
    ///
    /// When only routes differ from the last rule set this process applied, only routes are
    /// diffed, against what it installed (a class move costs one `ip -batch`); anything
    /// else, and the first apply after a start, reads the kernel and reconciles in full.
    pub fn apply(&mut self, ruleset: RuleSet) -> Result<ApplyReport, DataplaneError> {
        if let Some(changes) = self.route_delta(&ruleset)? {
            return self.apply_delta(ruleset, changes);
        }
        let desired = self.check(&ruleset)?;
        let routes_only = self.applied.as_ref().is_some_and(|applied| {
            applied.nft == desired.nft
                && applied.rules == desired.rules
                && applied.shapers == desired.shapers
        });
        let report = if routes_only {
            self.install_routes(&desired)?
        } else {
            self.reconcile(&desired)?
        };
        self.ruleset = Some(ruleset);
        self.routes = desired.routes.clone();
        self.nexthops = desired.nexthops.clone();
        self.applied = Some(desired);
        self.applied_avoided = self.failover.avoided().clone();
        Ok(report)
    }

    /// When `ruleset` differs from the one in force only in routes (and the lines avoided
    /// are the same as when it was compiled): which routes, checked. `None` means the
    /// full road. Changes nothing.
    fn route_delta(&self, ruleset: &RuleSet) -> Result<Option<RouteDelta>, DataplaneError> {
        let (Some(current), Some(applied)) = (&self.ruleset, &self.applied) else {
            return Ok(None);
        };
        if *self.failover.avoided() != self.applied_avoided
            || current.site != ruleset.site
            || current.default_class != ruleset.default_class
            || current.classes != ruleset.classes
            || current.lines != ruleset.lines
        {
            return Ok(None);
        }
        if !ruleset.is_sealed() {
            return Err(RuleSetError::NotSealed {
                site: ruleset.site.clone(),
                version: ruleset.version,
            }
            .into());
        }
        let changes = route_changes(&current.routes, &ruleset.routes);
        for &index in &changes.changed {
            validate_route(ruleset, &ruleset.routes[index])?;
        }
        // A new chain can shift the id of another (a hash collision): then unchanged
        // routes would need their nexthop changed too; the full road does that.
        let ids = nexthop_ids(&ruleset.routes);
        if ids.iter().any(|(chain, id)| {
            applied
                .nexthop_ids
                .get(chain)
                .is_some_and(|before| before != id)
        }) {
            return Ok(None);
        }
        Ok(Some(RouteDelta {
            changes,
            nexthop_ids: ids,
        }))
    }

    /// Installs only the routes in `changes` (rtnetlink), removes the gone ones and
    /// clears the flows that changed line (ctnetlink).
    fn apply_delta(
        &mut self,
        ruleset: RuleSet,
        delta: RouteDelta,
    ) -> Result<ApplyReport, DataplaneError> {
        let mut applied = self.applied.take().ok_or(DataplaneError::NoRuleSet)?;
        let result = self.install_delta(&ruleset, delta, &mut applied);
        self.applied = Some(applied);
        let report = result?;
        self.ruleset = Some(ruleset);
        Ok(report)
    }

    fn install_delta(
        &mut self,
        ruleset: &RuleSet,
        delta: RouteDelta,
        applied: &mut DesiredState,
    ) -> Result<ApplyReport, DataplaneError> {
        let RouteDelta {
            changes,
            nexthop_ids: ids,
        } = delta;
        let avoided = self.applied_avoided.clone();
        let nexthops = compile_nexthops(ruleset, &ids, &avoided);
        let (nexthop_upserts, nexthop_deletes) = nexthop::diff(&nexthops, &self.nexthops);
        let nexthop_commands = nexthop_upserts.len() + nexthop_deletes.len();
        self.replace_nexthops(&nexthop_upserts)?;
        let mut upserts = Vec::new();
        for &index in &changes.changed {
            let route = &ruleset.routes[index];
            let (key, target, placement) = compile_route(ruleset, route, &avoided, &ids);
            upserts.push((route.class.clone(), key, target, placement));
        }
        let mut deleted_keys = Vec::new();
        for (class, destination) in &changes.removed {
            let destination = destination.trunc();
            if let Some(placement) = applied.placements.get(&(class.clone(), destination)) {
                deleted_keys.push(RouteKey {
                    table: super::desired::class_table(placement.mark),
                    destination,
                });
            }
        }
        let replace: Vec<(&RouteKey, &RouteTarget)> = upserts
            .iter()
            .filter(|(_, key, target, _)| {
                !self
                    .routes
                    .get(key)
                    .is_some_and(|installed| installed.same_entry(target))
            })
            .map(|(_, key, target, _)| (key, target))
            .collect();
        let replaced = replace.len();
        if !replace.is_empty() {
            self.replace_routes(&replace)?;
        }
        let deletes = route_deletes(&deleted_keys);
        let socket = self.socket()?;
        socket.execute(&deletes, true).map_err(KernelError::from)?;
        socket
            .delete_nexthops(&nexthop_deletes)
            .map_err(KernelError::from)?;
        self.nexthops = nexthops.clone();
        applied.nexthops = nexthops;
        applied.nexthop_ids = ids;

        let mut flows_moved = Vec::new();
        for (class, key, target, placement) in upserts {
            if let Some(old) = self.routes.get(&key)
                && old.device != target.device
            {
                flows_moved.push(MovedFlows {
                    mark: placement.mark,
                    destination: key.destination,
                });
            }
            applied.routes.insert(key.clone(), target.clone());
            self.routes.insert(key.clone(), target);
            applied
                .placements
                .insert((class, key.destination), placement);
        }
        for ((class, destination), key) in changes.removed.iter().zip(&deleted_keys) {
            applied.routes.remove(key);
            self.routes.remove(key);
            applied
                .placements
                .remove(&(class.clone(), destination.trunc()));
        }
        let conntrack_entries_deleted = self.delete_flows(&flows_moved, &applied.placements)?;
        Ok(ApplyReport {
            route_commands: replaced + deletes.len(),
            nexthop_commands,
            flows_moved,
            conntrack_entries_deleted,
            on_backup: on_backup(applied),
            ..ApplyReport::default()
        })
    }

    /// Reads the kernel and repairs any drift from the rule set in force.
    pub fn resync(&mut self) -> Result<ApplyReport, DataplaneError> {
        let ruleset = self.ruleset.clone().ok_or(DataplaneError::NoRuleSet)?;
        self.applied = None;
        self.apply(ruleset)
    }

    /// A rule set from the controller: its word also ends local failovers of lines that
    /// are up again.
    pub fn apply_from_controller(
        &mut self,
        ruleset: RuleSet,
    ) -> Result<ApplyReport, DataplaneError> {
        let before = self.failover.avoided().clone();
        let delta = self.route_delta(&ruleset)?;
        if delta.is_none() {
            self.check(&ruleset)?;
        }
        self.failover.on_controller_rules();
        match delta {
            Some(changes) if *self.failover.avoided() == before => {
                self.apply_delta(ruleset, changes)
            }
            _ => self.apply(ruleset),
        }
    }

    fn reconcile(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let devices: BTreeSet<String> = desired.shapers.keys().cloned().collect();
        let kernel = self.kernel.clone();
        let current = KernelState::read(&kernel, self.socket()?, &devices)?;
        self.interfaces = current.interfaces.clone();
        let mut report = ApplyReport::default();

        let nft_commands = nft::diff(&desired.nft, current.nft.as_ref());
        report.nft_commands = nft_commands.len();
        if !nft_commands.is_empty() {
            self.kernel.nft_apply(&nft::batch(nft_commands))?;
        }

        let mut tc_commands = Vec::new();
        for (device, listed) in &current.shapers {
            match desired.shapers.get(device) {
                Some(shaper) => tc_commands.extend(htb::diff(device, shaper, listed)),
                None if listed.root_default.is_some() => tc_commands.push(htb::delete_root(device)),
                None => {}
            }
        }
        report.qdisc_commands = tc_commands.len();
        let interfaces = current.interfaces.clone();
        let socket = self.socket()?;
        apply_tc(socket, &tc_commands, &interfaces)?;

        let changes = routing::diff_entries(
            &desired.rules,
            &desired.routes,
            &current.rules,
            &current.routes,
        );
        report.rule_commands = changes.rule_adds.len() + changes.rule_deletes.len();
        report.route_commands = changes.upserts.len() + changes.route_deletes.len();
        let (nexthop_upserts, nexthop_deletes) =
            nexthop::diff(&desired.nexthops, &current.nexthops);
        report.nexthop_commands = nexthop_upserts.len() + nexthop_deletes.len();
        // Nexthops before the routes that use them, new routes before the rules that use
        // them; old ones after.
        socket
            .replace_nexthops(&nexthop_upserts, &interfaces)
            .map_err(KernelError::from)?;
        socket
            .replace_routes(&changes.upserts, &interfaces)
            .map_err(KernelError::from)?;
        socket
            .execute(&rule_requests(changes.rule_adds, true), false)
            .map_err(KernelError::from)?;
        let mut removals = rule_requests(changes.rule_deletes, false);
        removals.extend(route_deletes(changes.route_deletes));
        socket.execute(&removals, true).map_err(KernelError::from)?;
        socket
            .delete_nexthops(&nexthop_deletes)
            .map_err(KernelError::from)?;

        report.flows_moved = moved_flows(&desired.placements, &desired.routes, &current.routes);
        report.conntrack_entries_deleted =
            self.delete_flows(&report.flows_moved, &desired.placements)?;
        report.on_backup = on_backup(desired);
        self.start_flow_index();
        Ok(report)
    }

    /// Clears the conntrack entries of moved flows over ctnetlink (one kernel dump per
    /// class and family, then deletes of the entries towards the moved destinations).
    fn delete_flows(
        &mut self,
        moved: &[MovedFlows],
        placements: &BTreeMap<(String, ipnet::IpNet), super::desired::Placement>,
    ) -> Result<u64, DataplaneError> {
        let deletes = conntrack_deletes(moved, placements);
        if deletes.is_empty() {
            return Ok(0);
        }
        self.conntrack().map_err(conntrack_failed)?;
        let conntrack_socket = self.conntrack_socket.as_mut().expect("opened above");
        let mut deleted = 0;
        for delete in deletes {
            let destinations = delete.destinations.as_deref();
            let entries = match &self.flow_index {
                Some(index) => index.take(conntrack_socket, delete.mark, delete.v6, destinations),
                None => conntrack_socket
                    .dump_by_mark(delete.v6, delete.mark, CLASS_MARK_MASK)
                    .map(|all| {
                        all.into_iter()
                            .filter(|entry| {
                                destinations.is_none_or(|nets| {
                                    nets.iter().any(|net| net.contains(&entry.destination))
                                })
                            })
                            .collect()
                    }),
            }
            .map_err(conntrack_failed)?;
            deleted += conntrack_socket
                .delete(&entries)
                .map_err(conntrack_failed)?;
        }
        Ok(deleted)
    }

    fn conntrack(&mut self) -> Result<&mut ConntrackSocket, NetlinkError> {
        if self.conntrack_socket.is_none() {
            self.conntrack_socket = Some(ConntrackSocket::open(self.kernel.netns())?);
        }
        Ok(self.conntrack_socket.as_mut().expect("opened above"))
    }

    /// Starts following conntrack events (once; the index fills itself in the
    /// background), so that a later move finds its flows without walking the table.
    fn start_flow_index(&mut self) {
        if self.flow_index.is_none() {
            match FlowIndex::start(self.kernel.netns(), CLASS_MARK_MASK) {
                Ok(index) => self.flow_index = Some(index),
                Err(error) => tracing::warn!("no conntrack events, moves will dump: {error}"),
            }
        }
    }

    /// Replaces only the routes that differ from what was last installed, then moves the
    /// affected flows.
    fn install_routes(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let (nexthop_upserts, nexthop_deletes) = nexthop::diff(&desired.nexthops, &self.nexthops);
        let nexthop_commands = nexthop_upserts.len() + nexthop_deletes.len();
        // A failover is here: the dead line's nexthops now point at their backups, and
        // every route through them follows in the same instant.
        self.replace_nexthops(&nexthop_upserts)?;
        let changed: Vec<(&RouteKey, &RouteTarget)> = desired
            .routes
            .iter()
            .filter(|(key, target)| {
                !self
                    .routes
                    .get(key)
                    .is_some_and(|installed| installed.same_entry(target))
            })
            .collect();
        let upserts = changed.len();
        if !changed.is_empty() {
            self.replace_routes(&changed)?;
        }
        let deletes = route_deletes(
            self.routes
                .keys()
                .filter(|key| !desired.routes.contains_key(key)),
        );
        let socket = self.socket()?;
        socket.execute(&deletes, true).map_err(KernelError::from)?;
        socket
            .delete_nexthops(&nexthop_deletes)
            .map_err(KernelError::from)?;
        let flows_moved = moved_flows(&desired.placements, &desired.routes, &self.routes);
        self.routes = desired.routes.clone();
        self.nexthops = desired.nexthops.clone();
        let conntrack_entries_deleted = self.delete_flows(&flows_moved, &desired.placements)?;
        Ok(ApplyReport {
            route_commands: upserts + deletes.len(),
            nexthop_commands,
            flows_moved,
            conntrack_entries_deleted,
            on_backup: on_backup(desired),
            ..ApplyReport::default()
        })
    }

    /// The rtnetlink socket, opened on first use in the dataplane's namespace.
    fn socket(&mut self) -> Result<&mut RouteSocket, KernelError> {
        if self.route_socket.is_none() {
            self.route_socket = Some(RouteSocket::open(self.kernel.netns())?);
        }
        Ok(self.route_socket.as_mut().expect("opened above"))
    }

    /// Route replaces over rtnetlink (interface indexes refreshed when one is unknown).
    fn replace_routes(
        &mut self,
        changed: &[(&RouteKey, &RouteTarget)],
    ) -> Result<(), DataplaneError> {
        if changed
            .iter()
            .any(|(_, target)| !self.interfaces.contains_key(&target.device))
        {
            self.interfaces = self.socket()?.links().map_err(KernelError::from)?;
        }
        let interfaces = std::mem::take(&mut self.interfaces);
        let result = self.socket()?.replace_routes(changed, &interfaces);
        self.interfaces = interfaces;
        result.map_err(|error| DataplaneError::Netlink(error.to_string()))
    }

    /// Nexthop creates and replaces over rtnetlink (interface indexes refreshed when one
    /// is unknown).
    fn replace_nexthops(&mut self, nexthops: &[(u32, &Nexthop)]) -> Result<(), DataplaneError> {
        if nexthops.is_empty() {
            return Ok(());
        }
        if nexthops
            .iter()
            .any(|(_, nexthop)| !self.interfaces.contains_key(&nexthop.device))
        {
            self.interfaces = self.socket()?.links().map_err(KernelError::from)?;
        }
        let interfaces = std::mem::take(&mut self.interfaces);
        let result = self.socket()?.replace_nexthops(nexthops, &interfaces);
        self.interfaces = interfaces;
        result.map_err(|error| DataplaneError::Netlink(error.to_string()))
    }

    /// Recompiles with the current avoided lines and moves the routes that change.
    fn reroute(&mut self) -> Result<ApplyReport, DataplaneError> {
        let ruleset = self.ruleset.as_ref().ok_or(DataplaneError::NoRuleSet)?;
        // Traffic first: the chains' nexthops move before anything else is compiled
        // (a handful of messages; the full recompile of every route comes after).
        let mut switched = 0;
        if let Some(applied) = &self.applied {
            let nexthops = compile_nexthops(ruleset, &applied.nexthop_ids, self.failover.avoided());
            let (upserts, _) = nexthop::diff(&nexthops, &self.nexthops);
            let upserts: Vec<(u32, Nexthop)> = upserts
                .into_iter()
                .map(|(id, nexthop)| (id, nexthop.clone()))
                .collect();
            let borrowed: Vec<(u32, &Nexthop)> = upserts.iter().map(|(id, n)| (*id, n)).collect();
            self.replace_nexthops(&borrowed)?;
            switched = upserts.len();
            self.nexthops.extend(upserts);
        }
        let ruleset = self.ruleset.as_ref().ok_or(DataplaneError::NoRuleSet)?;
        let desired = compile(ruleset, self.failover.avoided())?;
        let mut report = self.install_routes(&desired)?;
        report.nexthop_commands += switched;
        self.applied = Some(desired);
        self.applied_avoided = self.failover.avoided().clone();
        Ok(report)
    }

    /// A line's health changed. Down: every route on it moves to its first healthy backup
    /// now. Up: nothing yet (see [`FailoverState`]).
    pub fn on_line_event(
        &mut self,
        event: &LineEvent,
        now: tokio::time::Instant,
    ) -> Result<ApplyReport, DataplaneError> {
        match self.failover.on_event(event, now) {
            Some(FailoverChange::Avoid(_)) if self.ruleset.is_some() => self.reroute(),
            _ => Ok(ApplyReport::default()),
        }
    }

    /// A line's outage was withdrawn before the controller heard of it: route over it again
    /// now (see [`FailoverState::withdraw`]).
    pub fn withdraw_outage(&mut self, line: &str) -> Result<ApplyReport, DataplaneError> {
        match self.failover.withdraw(line) {
            Some(_) if self.ruleset.is_some() => self.reroute(),
            _ => Ok(ApplyReport::default()),
        }
    }

    /// Standalone fail-back of lines whose hold-down ran out.
    pub fn on_tick(&mut self, now: tokio::time::Instant) -> Result<ApplyReport, DataplaneError> {
        if self.failover.on_tick(now).is_empty() || self.ruleset.is_none() {
            return Ok(ApplyReport::default());
        }
        self.reroute()
    }

    /// When [`Dataplane::on_tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.failover.next_deadline()
    }

    /// Puts a DPI verdict into the nft map: this flow is `class` for `timeout`.
    pub fn add_dpi_verdict(
        &self,
        flow: &FlowKey,
        class: &str,
        timeout: Duration,
    ) -> Result<(), DataplaneError> {
        let ruleset = self.ruleset.as_ref().ok_or(DataplaneError::NoRuleSet)?;
        let mark = ruleset
            .class(class)
            .ok_or_else(|| DataplaneError::UnknownClass(class.to_string()))?
            .mark;
        let Some(element) = nft::dpi_element(flow, mark, timeout.as_secs()) else {
            return Ok(());
        };
        Ok(self.kernel.nft_text(&element)?)
    }
}

/// Removes everything wansteer owns (nft table, tagged rules and routes, its root HTB
/// qdiscs) and nothing else. Safe to run twice.
pub fn cleanup(kernel: &Kernel) -> Result<CleanupReport, KernelError> {
    let mut socket = RouteSocket::open(kernel.netns())?;
    let current = KernelState::read(kernel, &mut socket, &BTreeSet::new())?;
    let mut report = CleanupReport::default();
    if current.nft.is_some() {
        match kernel.nft_apply(&nft::delete_table()) {
            Ok(()) => report.nft_table = true,
            Err(KernelError::Failed { stderr, .. }) if stderr.contains("No such file") => {}
            Err(error) => return Err(error),
        }
    }
    report.rules = current.rules.len();
    report.routes = current.routes.len();
    socket.execute(&rule_requests(&current.rules, false), true)?;
    socket.execute(&route_deletes(current.routes.keys()), true)?;
    report.nexthops = current.nexthops.len();
    let nexthop_ids: Vec<u32> = current.nexthops.keys().copied().collect();
    socket.delete_nexthops(&nexthop_ids)?;
    let qdiscs: Vec<TcCommand> = current
        .shapers
        .iter()
        .filter(|(_, listed)| listed.root_default.is_some())
        .map(|(device, _)| htb::delete_root(device))
        .collect();
    report.qdiscs = qdiscs.len();
    apply_tc(&mut socket, &qdiscs, &current.interfaces)?;
    Ok(report)
}
