//! Ranged retrieval of `member` (MS-ADTS 3.1.1.3.1.3.3) against a real LDAP
//! server over TCP that truncates multi-valued attributes at MaxValRange as
//! Windows does — Samba does not, and slapd knows no ranges. The server
//! (ldap3_proto) answers a group's `member` with at most 1,500 values,
//! under `member;range=<low>-<high>`, and `<high>` is `*` on the last
//! range; the connector must ask range after range and store every member.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use ldap3_proto::proto::{LdapPartialAttribute, LdapSearchResultEntry};
use ldap3_proto::{LdapCodec, LdapMsg, SearchRequest, ServerOps};
use roster_connectors::runner::{SyncerOptions, sync_directory};
use roster_store::*;
use roster_webhook::SealingKey;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::support;

/// Windows' default MaxValRange.
const MAX_VAL_RANGE: usize = 1500;
const USERS: usize = 3200;
const BIND_DN: &str = "roster-svc@corp.example";
const PASSWORD: &str = "s3cret";
const USERS_BASE: &str = "OU=Staff,DC=corp,DC=example";
const GROUPS_BASE: &str = "OU=Groups,DC=corp,DC=example";
const NTDS: &str = "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,\
     CN=Configuration,DC=corp,DC=example";

/// The domain the server holds: users, and groups with their member DNs.
struct Domain {
    users: Vec<String>,
    groups: Vec<(String, Vec<String>)>,
    /// The attribute lists of the base searches of a group, in order.
    range_requests: Mutex<Vec<String>>,
}

fn user_dn(i: usize) -> String {
    format!("CN=user{i:05},{USERS_BASE}")
}

/// A distinct objectGUID per entry.
fn guid(kind: u8, i: usize) -> Vec<u8> {
    let mut bytes = vec![kind; 16];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes
}

fn attr(name: &str, values: Vec<Vec<u8>>) -> LdapPartialAttribute {
    LdapPartialAttribute {
        atype: name.into(),
        vals: values,
    }
}

fn text(name: &str, value: &str) -> LdapPartialAttribute {
    attr(name, vec![value.as_bytes().to_vec()])
}

impl Domain {
    fn new() -> Domain {
        let users: Vec<String> = (0..USERS).map(user_dn).collect();
        let groups = vec![
            (format!("CN=everyone,{GROUPS_BASE}"), users.clone()),
            (format!("CN=small,{GROUPS_BASE}"), users[..2].to_vec()),
        ];
        Domain {
            users,
            groups,
            range_requests: Mutex::new(Vec::new()),
        }
    }

    fn answer(&self, req: &SearchRequest) -> Vec<LdapMsg> {
        let entry = |dn: &str, attributes| {
            req.gen_result_entry(LdapSearchResultEntry {
                dn: dn.into(),
                attributes,
            })
        };
        let mut out = Vec::new();
        match req.base.as_str() {
            "" => out.push(entry(
                "",
                vec![
                    text("highestCommittedUSN", "4242"),
                    text("dsServiceName", NTDS),
                ],
            )),
            NTDS => out.push(entry(NTDS, vec![attr("invocationId", vec![guid(9, 0)])])),
            USERS_BASE => {
                for (i, dn) in self.users.iter().enumerate() {
                    out.push(entry(
                        dn,
                        vec![
                            attr("objectGUID", vec![guid(1, i)]),
                            text("cn", &format!("user{i:05}")),
                            text("userPrincipalName", &format!("user{i:05}@corp.example")),
                            text("userAccountControl", "512"),
                        ],
                    ));
                }
            }
            GROUPS_BASE => {
                for (i, (dn, members)) in self.groups.iter().enumerate() {
                    let cn = dn.split(',').next().unwrap_or_default();
                    let mut attributes = vec![
                        attr("objectGUID", vec![guid(2, i)]),
                        text("cn", cn.trim_start_matches("CN=")),
                    ];
                    if req.attrs.iter().any(|a| a.eq_ignore_ascii_case("member")) {
                        attributes.push(member_range(members, 0, None, false));
                    }
                    out.push(entry(dn, attributes));
                }
            }
            base => {
                // A base search of a group for `member;range=<low>-<high>`.
                self.range_requests
                    .lock()
                    .unwrap()
                    .push(req.attrs.join(" "));
                let group = self.groups.iter().find(|(dn, _)| dn == base);
                let range = req.attrs.iter().find_map(|a| parse_range(a));
                if let (Some((dn, members)), Some((low, high))) = (group, range) {
                    out.push(entry(dn, vec![member_range(members, low, high, true)]));
                }
            }
        }
        out.push(req.gen_success());
        out
    }
}

/// `member;range=1500-*` → `(1500, None)`; `member;range=0-99` → `(0, Some(99))`.
fn parse_range(attr: &str) -> Option<(usize, Option<usize>)> {
    let range = attr.to_ascii_lowercase();
    let range = range.strip_prefix("member;range=")?.to_string();
    let (low, high) = range.split_once('-')?;
    Some((low.parse().ok()?, high.parse().ok()))
}

/// The values from `low` on, at most MaxValRange of them and none past
/// `high`. As AD does: an unranged request that fits gets plain `member`;
/// otherwise the returned name carries the range sent, `*` as its high
/// bound when it reaches the last value.
fn member_range(
    members: &[String],
    low: usize,
    high: Option<usize>,
    ranged: bool,
) -> LdapPartialAttribute {
    let wanted_end = high.map_or(members.len(), |h| (h + 1).min(members.len()));
    let end = wanted_end.min(low + MAX_VAL_RANGE).max(low);
    let values = members[low.min(members.len())..end]
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect();
    let name = if !ranged && end == members.len() {
        "member".to_string()
    } else if end == members.len() {
        format!("member;range={low}-*")
    } else {
        format!("member;range={low}-{}", end - 1)
    };
    attr(&name, values)
}

async fn serve(domain: Arc<Domain>, socket: TcpStream) {
    let (r, w) = tokio::io::split(socket);
    let mut requests = FramedRead::new(r, LdapCodec::default());
    let mut responses = FramedWrite::new(w, LdapCodec::default());
    while let Some(Ok(msg)) = requests.next().await {
        let answer = match ServerOps::try_from(msg) {
            Ok(ServerOps::SimpleBind(bind)) if bind.dn == BIND_DN && bind.pw == PASSWORD => {
                vec![bind.gen_success()]
            }
            Ok(ServerOps::SimpleBind(bind)) => vec![bind.gen_invalid_cred()],
            Ok(ServerOps::Search(search)) => domain.answer(&search),
            Ok(ServerOps::Unbind(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        for msg in answer {
            if responses.send(msg).await.is_err() {
                return;
            }
        }
    }
}

async fn start_server(domain: Arc<Domain>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(domain.clone(), socket));
        }
    });
    addr
}

async fn members_of(store: &dyn Store, dir: DirectoryId, name: &str) -> usize {
    let query = ListQuery {
        count: 10,
        ..ListQuery::default()
    };
    let groups = store.list_groups(dir, &query).await.expect("groups").items;
    let group = groups
        .iter()
        .find(|g| g.display_name == name)
        .expect("group");
    let (_, mut pages) = store.read_group(dir, group.id, 1000).await.expect("read");
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page.expect("page").len();
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_ranges_past_max_val_range() {
    let domain = Arc::new(Domain::new());
    let addr = start_server(domain.clone()).await;

    let scratch = support::sqlite().await;
    let store = scratch.store.clone();
    let key = SealingKey::from_bytes(&[5u8; 32]).expect("key");
    let settings = json!({
        "url": format!("ldap://{addr}"),
        "bind_dn": BIND_DN,
        "users_base_dn": USERS_BASE,
        "groups_base_dn": GROUPS_BASE,
    });
    let dir = support::ad_directory(store.as_ref(), &key, "ranged ad", settings, PASSWORD).await;
    let options = SyncerOptions {
        owner: "replica-a".into(),
        ..SyncerOptions::default()
    };

    let status = sync_directory(&store, &key, &options, dir)
        .await
        .expect("sync")
        .expect("lease");
    assert_eq!(status.created, (USERS + 2) as i64);
    assert_eq!(members_of(store.as_ref(), dir, "everyone").await, USERS);
    assert_eq!(members_of(store.as_ref(), dir, "small").await, 2);
    // 0-1499 came with the search; then 1500-2999, then 3000-3199 as `3000-*`.
    assert_eq!(
        *domain.range_requests.lock().unwrap(),
        ["member;range=1500-*", "member;range=3000-*"]
    );
}
