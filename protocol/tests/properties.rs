//! Property tests: every message round-trips through framing, and the decoder
//! never panics, whatever bytes arrive and however they are split.

use proptest::prelude::*;
use protocol::*;

fn tenant() -> impl Strategy<Value = TenantId> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| TenantId::new(s).unwrap())
}

fn agent_id() -> impl Strategy<Value = AgentId> {
    "ag-[a-f0-9]{1,16}".prop_map(|s| AgentId::new(s).unwrap())
}

fn port_obs() -> impl Strategy<Value = Observation> {
    (
        any::<u16>(),
        prop_oneof![
            Just(PortState::Open),
            Just(PortState::Closed),
            Just(PortState::Filtered)
        ],
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,40}"),
        any::<bool>(),
    )
        .prop_map(|(port, state, service, banner, tls)| {
            Observation::Port(PortObservation {
                ip: "127.0.0.1".into(),
                port,
                state,
                service,
                product: None,
                banner,
                tls,
            })
        })
}

fn http_obs() -> impl Strategy<Value = Observation> {
    (
        any::<u16>(),
        proptest::option::of(".{0,30}"),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(status, hsts, max_age)| {
            Observation::Http(HttpObservation {
                url: "https://example.test/".into(),
                status,
                hsts,
                hsts_max_age: max_age,
                hsts_include_subdomains: false,
                csp: None,
                x_frame_options: Some("DENY".into()),
                x_content_type_options: None,
                referrer_policy: None,
                permissions_policy: None,
                server: Some("nginx/1.25".into()),
                x_powered_by: None,
                redirects_to_https: Some(true),
            })
        })
}

fn record() -> impl Strategy<Value = Record> {
    (
        ".{0,30}",
        ".{0,10}",
        any::<u64>(),
        prop_oneof![port_obs(), http_obs()],
    )
        .prop_map(|(asset, job_id, observed_ms, observation)| Record {
            asset,
            job_id,
            observed_ms,
            observation,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), ".{0,20}").prop_map(|(a, b, s)| Message::Hello(Hello {
            min_version: a,
            max_version: b,
            software: s
        })),
        (any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(v, l, t, h)| {
            Message::Welcome(Welcome {
                version: v,
                last_acked: l,
                server_time_ms: t,
                heartbeat_interval_ms: h,
            })
        }),
        any::<u64>().prop_map(|s| Message::Ack(Ack { sequence: s })),
        any::<u64>().prop_map(|s| Message::Heartbeat(Heartbeat { sent_ms: s })),
        (
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(token, csr_der, signing_key)| Message::Enroll(EnrollRequest {
                    token,
                    csr_der,
                    signing_key,
                    hostname: "h".into()
                })
            ),
        (
            tenant(),
            agent_id(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(tenant, agent, der)| Message::Enrolled(EnrollResponse {
                tenant,
                agent,
                certificate_der: der.clone(),
                tenant_ca_der: der.clone(),
                server_ca_der: der,
            })),
        (
            proptest::collection::vec(any::<u8>(), 0..256),
            any::<[u8; 32]>()
        )
            .prop_map(|(body, s)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&s);
                Message::Batch(SignedBatch { body, signature })
            }),
        ".{0,50}".prop_map(|m| Message::Error(ErrorMessage {
            code: ErrorCode::BadRequest,
            message: m
        })),
        (
            proptest::collection::vec("[0-9./]{1,18}", 0..3),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(cidrs, a, b)| Message::Jobs(JobPush {
                scope: Scope {
                    cidrs,
                    hostnames: vec!["*.example.test".into()],
                    ports: vec![PortRange {
                        start: a.min(b),
                        end: a.max(b)
                    }],
                },
                jobs: vec![JobSpec {
                    job_id: "j".into(),
                    targets: vec!["127.0.0.1".into()],
                    ports: vec![],
                    checks: vec![CheckKind::Ports, CheckKind::Tls],
                    every_secs: Some(60),
                }],
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_round_trip_through_frames(msgs in proptest::collection::vec(message(), 1..8), split in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend(encode_frame(m, DEFAULT_MAX_FRAME).unwrap());
        }
        // Deliver in two arbitrary pieces.
        let cut = split.index(wire.len() + 1);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut out = Vec::new();
        for part in [&wire[..cut], &wire[cut..]] {
            dec.push(part);
            while let Some(m) = dec.next_message().unwrap() {
                out.push(m);
            }
        }
        prop_assert_eq!(out, msgs);
        prop_assert_eq!(dec.finish(), Ok(()));
    }

    #[test]
    fn signed_batches_round_trip(t in tenant(), a in agent_id(), seq in 1u64.., recs in proptest::collection::vec(record(), 0..20), seed in any::<[u8; 32]>()) {
        let key = SigningKey::from_bytes(&seed);
        let body = BatchBody { tenant: t, agent: a, sequence: seq, created_ms: 5, records: recs };
        let signed = sign_batch(&key, &body).unwrap();
        prop_assert_eq!(signed.verify(&key.verifying_key()).unwrap(), body);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let mut dec = FrameDecoder::new(4096);
        for c in bytes.chunks(chunk) {
            dec.push(c);
            while let Ok(Some(_)) = dec.next_message() {}
        }
        let _ = decode_frame(&bytes, 4096);
        let _ = decode_value::<BatchBody>(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(msg in message(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
        for (i, b) in flips {
            let at = i.index(frame.len());
            frame[at] ^= b;
        }
        let _ = decode_frame(&frame, DEFAULT_MAX_FRAME);
    }
}
