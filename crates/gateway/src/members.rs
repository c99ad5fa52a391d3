//! Group members streamed into SCIM JSON responses.
//!
//! A group's members can outgrow any single gRPC message, so the directory
//! service sends them with `ReadGroup`: the group first, then its members in
//! batches, all from one snapshot. The gateway writes the group's JSON
//! without its closing brace, then each batch of members as it arrives, then
//! the closing; neither the member list nor its JSON is ever held whole.
//! The status and `ETag` are sent before the members: a failure after that
//! point can only abort the response (logged), never turn it into an error.

use std::fmt;

use axum::body::{Body, Bytes};
use futures::SinkExt;
use futures::TryStreamExt as _;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use roster_proto::directory::{Group, Member, ReadGroupResponse};
use roster_scim::patch::ResourceKind;
use roster_scim::projection::project;
use serde_json::{Value, json};
use tonic::codegen::BoxStream;
use tonic::{Code, Status};

use crate::dialect::Dialect;
use crate::query::Projection;
use crate::render::{Kind, render_group, render_member};
use crate::resources::apply_projection;

/// An open `ReadGroup` read: the group, members that came with its first
/// message, and the rest of the stream.
pub struct GroupRead {
    /// The group (without members) the members belong to.
    pub group: Group,
    /// Members already received.
    pub first: Vec<Member>,
    /// The remaining messages.
    pub rest: BoxStream<ReadGroupResponse>,
}

/// Where a rendered group's members come from.
pub enum MemberSource {
    /// An open read whose group is the rendered one.
    Open(Box<GroupRead>),
    /// A listed group whose members did not fit the list reply: read when the
    /// body gets to it, and rendered from that read (its group and members
    /// then agree).
    Deferred(BoxFuture<'static, Result<GroupRead, Status>>),
}

/// Members still to be written into a rendered group.
pub struct MemberFeed {
    /// Where they come from.
    pub source: MemberSource,
    /// `{public_url}/scim/v2/{directory_id}`, for `$ref`.
    pub scim_base: String,
    /// The request's attribute selection (it may select member sub-attributes).
    pub projection: Projection,
    /// The dialect the members are written in.
    pub dialect: Dialect,
}

impl fmt::Debug for MemberFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberFeed").finish_non_exhaustive()
    }
}

/// A rendered resource and, for a group, the members still to stream into it.
#[derive(Debug)]
pub struct Rendered {
    /// The resource, projected, without the members still to come.
    pub body: Value,
    /// Members to add to `members`.
    pub members: Option<MemberFeed>,
}

/// The body of one resource.
pub fn resource_body(rendered: Rendered) -> Body {
    match rendered.members {
        None => Body::from(to_json(&rendered.body)),
        Some(feed) => spawn_writer(vec![Piece::Group(rendered.body, Box::new(feed))]),
    }
}

/// The body of a ListResponse (RFC 7644 §3.4.2) in `dialect`.
pub fn list_body(resources: Vec<Rendered>, total: i64, start_index: i64, dialect: Dialect) -> Body {
    if resources.iter().all(|r| r.members.is_none()) {
        let bodies = resources.into_iter().map(|r| r.body).collect();
        return Body::from(to_json(&dialect.list_response(bodies, total, start_index)));
    }
    let mut envelope = dialect.list_response(Vec::new(), total, start_index);
    envelope["itemsPerPage"] = json!(resources.len());
    if let Some(obj) = envelope.as_object_mut() {
        obj.remove("Resources");
    }
    let mut pieces = vec![Piece::Text(open_object(&envelope, b"\"Resources\":["))];
    for (i, resource) in resources.into_iter().enumerate() {
        if i > 0 {
            pieces.push(Piece::Text(b",".to_vec()));
        }
        pieces.push(match resource.members {
            None => Piece::Text(to_json(&resource.body)),
            Some(feed) => Piece::Group(resource.body, Box::new(feed)),
        });
    }
    pieces.push(Piece::Text(b"]}".to_vec()));
    spawn_writer(pieces)
}

/// A part of a response body.
enum Piece {
    Text(Vec<u8>),
    /// A group (rendered without the members to come) and its members.
    Group(Value, Box<MemberFeed>),
}

type Chunk = Result<Bytes, std::io::Error>;

/// Writes the pieces from a task; the body ends when they are written, and
/// is cut (aborting the response) when reading members fails.
fn spawn_writer(pieces: Vec<Piece>) -> Body {
    let (mut tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::spawn(async move {
        for piece in pieces {
            let written = match piece {
                Piece::Text(text) => send(&mut tx, text).await,
                Piece::Group(head, feed) => write_group(&mut tx, head, *feed).await,
            };
            match written {
                Ok(()) => {}
                Err(Stop::Gone) => return,
                Err(Stop::Failed(status)) => {
                    tracing::warn!(error = %status.message(), code = ?status.code(),
                        "reading group members failed mid-response; response aborted");
                    let _ = tx
                        .send(Err(std::io::Error::other(status.to_string())))
                        .await;
                    return;
                }
            }
        }
    });
    Body::from_stream(rx)
}

/// Why writing stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// The directory service failed.
    Failed(Status),
}

async fn send(tx: &mut mpsc::Sender<Chunk>, bytes: Vec<u8>) -> Result<(), Stop> {
    tx.send(Ok(Bytes::from(bytes)))
        .await
        .map_err(|_| Stop::Gone)
}

async fn write_group(
    tx: &mut mpsc::Sender<Chunk>,
    head: Value,
    feed: MemberFeed,
) -> Result<(), Stop> {
    let MemberFeed {
        source,
        scim_base,
        projection,
        dialect,
    } = feed;
    let (head, read) = match source {
        MemberSource::Open(read) => (head, *read),
        // Rendered from its own read, so that the group and its members agree.
        MemberSource::Deferred(open) => match open.await {
            Ok(read) => {
                let head = group_head(&read.group, &scim_base, &projection);
                (dialect.resource_out(head), read)
            }
            // Deleted since it was listed: it goes out as listed.
            Err(status) if status.code() == Code::NotFound => {
                return send(tx, to_json(&head)).await;
            }
            Err(status) => return Err(Stop::Failed(status)),
        },
    };
    let mut writer = MembersWriter {
        opened: false,
        comma: head.as_object().is_some_and(|o| !o.is_empty()),
        scim_base: &scim_base,
        projection: &projection,
        dialect,
    };
    send(tx, open_object(&head, b"")).await?;
    writer.push(tx, &read.first).await?;
    let mut rest = read.rest;
    while let Some(message) = rest.try_next().await.map_err(Stop::Failed)? {
        writer.push(tx, &message.members).await?;
    }
    send(tx, writer.close()).await
}

/// Writes `"members":[…]` batch by batch after an open object; nothing for
/// a group without members (which SCIM renders without the attribute).
struct MembersWriter<'a> {
    opened: bool,
    /// Whether the open object has members, so `"members"` follows a comma.
    comma: bool,
    scim_base: &'a str,
    projection: &'a Projection,
    dialect: Dialect,
}

impl MembersWriter<'_> {
    async fn push(&mut self, tx: &mut mpsc::Sender<Chunk>, members: &[Member]) -> Result<(), Stop> {
        let rendered = project_members(
            members
                .iter()
                .map(|m| render_member(m, self.scim_base))
                .collect(),
            self.projection,
        );
        let rendered: Vec<Value> = rendered
            .into_iter()
            .map(|m| self.dialect.member_out(m))
            .collect();
        if rendered.is_empty() {
            return Ok(());
        }
        let mut chunk = Vec::with_capacity(rendered.len() * 128);
        for member in &rendered {
            chunk.extend_from_slice(match (self.opened, self.comma) {
                (true, _) => &b","[..],
                (false, true) => &b",\"members\":["[..],
                (false, false) => &b"\"members\":["[..],
            });
            self.opened = true;
            chunk.extend_from_slice(&to_json(member));
        }
        send(tx, chunk).await
    }

    fn close(&self) -> Vec<u8> {
        match self.opened {
            true => b"]}".to_vec(),
            false => b"}".to_vec(),
        }
    }
}

/// A group rendered without members, with the projection applied.
pub fn group_head(group: &Group, scim_base: &str, projection: &Projection) -> Value {
    let mut head = render_group(group, scim_base, false);
    apply_projection(&mut head, Kind::Group, projection);
    head
}

/// Applies the projection's member sub-attribute selection to a batch, by
/// projecting a group that holds only these members.
fn project_members(members: Vec<Value>, projection: &Projection) -> Vec<Value> {
    if projection.is_default() {
        return members;
    }
    let mut probe = json!({ "members": members });
    project(
        &mut probe,
        ResourceKind::Group,
        &projection.attributes,
        &projection.excluded_attributes,
    );
    match probe.get_mut("members").map(Value::take) {
        Some(Value::Array(members)) => members,
        _ => Vec::new(),
    }
}

/// The JSON of an object without its closing brace, followed by `then` (a
/// comma separates it from the object's members, if any).
fn open_object(object: &Value, then: &[u8]) -> Vec<u8> {
    let mut text = to_json(object);
    text.pop();
    let empty = text == b"{";
    if !empty && !then.is_empty() {
        text.push(b',');
    }
    text.extend_from_slice(then);
    text
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}
