//! A minimal authoritative DNS server on loopback UDP/TCP for the DNS tests.
//!
//! Zones are a flat list of records. Names in a signed zone get RRSIG records
//! when the query sets the DNSSEC OK bit, as a signed authoritative server does.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::proto::dnssec::Algorithm;
use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, RRSIG, SigInput};
use hickory_resolver::proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, CAA, MX, SOA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType, SerialNumber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// One zone: its apex, whether it is signed, and its records.
pub struct Zone {
    pub apex: Name,
    pub signed: bool,
    pub records: Vec<Record>,
}

pub fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

pub fn txt(owner: &str, text: &[&str]) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::TXT(TXT::new(text.iter().map(|s| s.to_string()).collect())),
    )
}

pub fn mx(owner: &str, pref: u16, host: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::MX(MX::new(pref, name(host))))
}

pub fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::A(A::from(std::net::Ipv4Addr::from(ip))),
    )
}

pub fn caa_issue(owner: &str, ca: &str) -> Record {
    Record::from_rdata(
        name(owner),
        300,
        RData::CAA(CAA::new_issue(false, Some(name(ca)), vec![])),
    )
}

pub fn soa(apex: &str) -> Record {
    Record::from_rdata(
        name(apex),
        300,
        RData::SOA(SOA::new(
            name(&format!("ns1.{apex}")),
            name(&format!("hostmaster.{apex}")),
            2026010101,
            3600,
            600,
            86400,
            300,
        )),
    )
}

fn rrsig_for(owner: &Name, covered: RecordType, apex: &Name) -> Record {
    let input = SigInput {
        type_covered: covered,
        algorithm: Algorithm::ED25519,
        num_labels: owner.num_labels(),
        original_ttl: 300,
        sig_expiration: SerialNumber::new(2_000_000_000),
        sig_inception: SerialNumber::new(1_700_000_000),
        key_tag: 4242,
        signer_name: apex.clone(),
    };
    Record::from_rdata(
        owner.clone(),
        300,
        RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, vec![0x5a; 64]))),
    )
}

fn answer(zones: &[Zone], query: &Message) -> Message {
    let mut resp = Message::response(query.metadata.id, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    let dnssec_ok = query.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    if let Some(edns) = &query.edns {
        let mut e = Edns::new();
        e.set_max_payload(edns.max_payload().max(512));
        e.set_dnssec_ok(dnssec_ok);
        resp.set_edns(e);
    }
    let Some(q) = query.queries.first() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    resp.add_query(q.clone());
    let qname = q.name().to_lowercase();
    let Some(zone) = zones.iter().find(|z| z.apex.zone_of(&qname)) else {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    };
    let owned: Vec<&Record> = zone
        .records
        .iter()
        .filter(|r| r.name.to_lowercase() == qname)
        .collect();
    let answers: Vec<Record> = owned
        .iter()
        .filter(|r| r.record_type() == q.query_type())
        .map(|r| (*r).clone())
        .collect();
    if !answers.is_empty() {
        resp.add_answers(answers);
        if dnssec_ok && zone.signed {
            resp.add_answer(rrsig_for(&qname, q.query_type(), &zone.apex));
        }
    } else {
        // NXDOMAIN when the name owns nothing (and has no descendants), NODATA otherwise.
        let has_descendants = zone
            .records
            .iter()
            .any(|r| qname.zone_of(&r.name.to_lowercase()));
        if owned.is_empty() && !has_descendants {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Some(s) = zone
            .records
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
        {
            resp.add_authority(s.clone());
            if dnssec_ok && zone.signed {
                resp.add_authority(rrsig_for(&zone.apex, RecordType::SOA, &zone.apex));
            }
        }
    }
    resp
}

/// Serves `zones` on 127.0.0.1 (UDP and TCP on the same port); returns the address.
pub async fn serve(zones: Vec<Zone>) -> SocketAddr {
    let zones = Arc::new(zones);
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr)
        .await
        .expect("bind tcp on the same port");
    let z = zones.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Ok(bytes) = answer(&z, &q).to_vec() {
                let _ = udp.send_to(&bytes, peer).await;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let z = zones.clone();
            tokio::spawn(async move {
                while let Ok(len) = s.read_u16().await {
                    let mut buf = vec![0u8; usize::from(len)];
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let Ok(q) = Message::from_vec(&buf) else {
                        return;
                    };
                    let Ok(bytes) = answer(&z, &q).to_vec() else {
                        return;
                    };
                    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&bytes);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
