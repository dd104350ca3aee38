//! The control plane's status page (`GET /` on the admin port): the services and their
//! endpoints, the connected proxies with what each was sent and ACKed per type and its
//! last NACK, the certificates and when they expire, the registered workloads, and the
//! last load's errors. Plain HTML written on the server, no script: it reloads itself
//! every 5 seconds. The JSON behind it is `/proxies` and `/workloads`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::istio::WorkloadEntry;
use super::model::Mesh;
use super::plane::{now_ms, Plane, ProxyStatus};
use super::translate::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

const STYLE: &str = "body{font:14px/1.4 sans-serif;margin:24px;color:#1d2430}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eef1f5}code{font-size:12px}.ok{color:#176b2c}.warn{color:#9a6700}.bad{color:#b42318}\
.errors{background:#fdecea;border:1px solid #b42318;padding:8px}.muted{color:#667085}";

/// The five types in the order the page shows them, with a short name.
const TYPES: [(&str, &str); 5] = [
    (CLUSTER, "CDS"),
    (ENDPOINT, "EDS"),
    (LISTENER, "LDS"),
    (ROUTE, "RDS"),
    (SECRET, "SDS"),
];

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn utc(ms: u128) -> String {
    let since = Duration::from_millis(ms.min(u64::MAX as u128) as u64);
    let t = SystemTime::UNIX_EPOCH
        .checked_add(since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut out = Vec::new();
    crate::observe::access_log_fmt::rfc3339(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

/// `in 3h 5m` / `2m ago`.
fn relative(ms: u128) -> String {
    let now = now_ms();
    let (d, ago) = if ms >= now {
        (ms - now, false)
    } else {
        (now - ms, true)
    };
    let s = (d / 1000) as u64;
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    };
    if ago {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

pub fn render(plane: &Plane) -> String {
    let mesh = plane.mesh();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>Outrigger control plane</title><style>{STYLE}</style></head><body>\
         <h1>Outrigger control plane</h1><p class=\"muted\">trust domain <code>{}</code> \
         · mesh generation {} · {} services · {} workloads · {} proxies connected · {}</p>",
        esc(&plane.trust_domain),
        plane.generation(),
        mesh.services.len(),
        mesh.workloads.len(),
        plane.proxies.borrow().values().filter(|p| p.streams > 0).count(),
        esc(&utc(now_ms())),
    );
    let errors = plane.errors.borrow();
    if !errors.is_empty() {
        h.push_str("<div class=\"errors\" id=\"errors\"><b>The last change was refused; the previous mesh keeps serving:</b><ul>");
        for e in errors.iter() {
            let _ = write!(h, "<li><code>{}</code></li>", esc(e));
        }
        h.push_str("</ul></div>");
    }
    proxies(&mut h, plane);
    services(&mut h, &mesh);
    registered(&mut h, plane);
    h.push_str("<p class=\"muted\">JSON: <a href=\"/proxies\">/proxies</a> · <a href=\"/workloads\">/workloads</a> · /config_dump?node=ID</p></body></html>\n");
    h
}

fn proxies(h: &mut String, plane: &Plane) {
    h.push_str("<h2>Proxies</h2><table id=\"proxies\"><tr><th>node</th><th>namespace</th><th>streams</th><th>identity</th><th>certificate</th>");
    for (_, short) in TYPES {
        let _ = write!(h, "<th>{short}</th>");
    }
    h.push_str("</tr>");
    for (id, p) in plane.proxies.borrow().iter() {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>",
            esc(id),
            esc(&p.namespace),
            if p.streams > 0 {
                format!("<span class=\"ok\">{}</span>", p.streams)
            } else {
                "<span class=\"muted\">gone</span>".to_string()
            },
            esc(p.identity.as_deref().unwrap_or("-")),
            certificate(p),
        );
        for (t, _) in TYPES {
            h.push_str("<td>");
            type_cell(h, p, t);
            h.push_str("</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

fn certificate(p: &ProxyStatus) -> String {
    let Some(c) = &p.certificate else {
        return "-".into();
    };
    let serial: String = c.serial.chars().take(12).collect();
    format!(
        "serial <code>{}</code><br>expires {} ({})<br>renewal {}",
        esc(&serial),
        esc(&utc(c.not_after_unix_ms)),
        relative(c.not_after_unix_ms),
        relative(c.renew_at_unix_ms),
    )
}

/// The version sent, whether it was ACKed, and the last NACK.
fn type_cell(h: &mut String, p: &ProxyStatus, type_url: &str) {
    let short = |v: &str| v.chars().take(8).collect::<String>();
    match p.sent.get(type_url) {
        None => h.push_str("<span class=\"muted\">-</span>"),
        Some(sent) => {
            let acked = p.acked.get(type_url);
            let state = if acked == Some(sent) {
                "<span class=\"ok\">ACKed</span>"
            } else {
                "<span class=\"warn\">pending</span>"
            };
            let _ = write!(h, "<code>{}</code> {state}", esc(&short(sent)));
        }
    }
    if let Some(n) = p.nacked.get(type_url) {
        let _ = write!(
            h,
            "<br><span class=\"bad\">NACK <code>{}</code> {}: {}</span>",
            esc(&short(&n.version)),
            relative(n.at_unix_ms),
            esc(&n.message)
        );
    }
}

fn services(h: &mut String, mesh: &Mesh) {
    h.push_str("<h2>Services</h2><table id=\"services\"><tr><th>service</th><th>hosts</th><th>ports</th><th>resolution</th><th>endpoints</th></tr>");
    for (m, se) in &mesh.services {
        let ports: Vec<String> = se
            .ports
            .iter()
            .map(|p| format!("{} {}", p.number, p.protocol.as_deref().unwrap_or("TCP")))
            .collect();
        let endpoints: Vec<&WorkloadEntry> = match &se.workload_selector {
            Some(sel) => mesh
                .workloads
                .iter()
                .filter(|(wm, w)| wm.namespace == m.namespace && sel.selects(&w.labels))
                .map(|(_, w)| w)
                .collect(),
            None => se.endpoints.iter().collect(),
        };
        let eps: Vec<String> = endpoints
            .iter()
            .map(|w| {
                let ports: Vec<String> = w.ports.iter().map(|(n, p)| format!("{n}:{p}")).collect();
                let labels: Vec<String> =
                    w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "<code>{}</code> {} <span class=\"muted\">{}</span>",
                    esc(&w.address),
                    esc(&ports.join(" ")),
                    esc(&labels.join(", "))
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}/{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.namespace),
            esc(&m.name),
            esc(&se.hosts.join(", ")),
            esc(&ports.join(", ")),
            esc(se.resolution.as_deref().unwrap_or("NONE")),
            if eps.is_empty() {
                "<span class=\"warn\">none</span>".to_string()
            } else {
                eps.join("<br>")
            }
        );
    }
    h.push_str("</table>");
}

fn registered(h: &mut String, plane: &Plane) {
    let status = plane.registry.borrow().status();
    let list = status["workloads"].as_array().cloned().unwrap_or_default();
    h.push_str("<h2>Registered workloads</h2>");
    if list.is_empty() {
        h.push_str("<p class=\"muted\">none (PUT /workloads/NAMESPACE/NAME)</p>");
        return;
    }
    h.push_str("<table id=\"registered\"><tr><th>workload</th><th>address</th><th>service account</th><th>TTL left</th></tr>");
    for w in list {
        let text = |k: &str| w[k].as_str().unwrap_or("-").to_string();
        let _ = write!(
            h,
            "<tr><td>{}/{}</td><td><code>{}</code></td><td>{}</td><td>{} ms</td></tr>",
            esc(&text("namespace")),
            esc(&text("name")),
            esc(&text("address")),
            esc(&text("serviceAccount")),
            w["ttl_left_ms"].as_u64().unwrap_or(0)
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_times_read() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert!(relative(now_ms() + 3_700_000).starts_with("in 1h"));
        assert!(relative(now_ms().saturating_sub(5_000)).ends_with("ago"));
    }
}
