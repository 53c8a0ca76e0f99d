//! Cipher-suite table: IANA code points with the properties that make a suite weak.
//!
//! The native prober offers suites from this table; a suite the server picks
//! that is not listed here cannot be classified, so the table covers every
//! key exchange / cipher / MAC combination that mainstream TLS stacks
//! (OpenSSL, SChannel, NSS, Java) have shipped for TLS 1.0-1.2.

use protocol::WeakCipherClass;

/// Key exchange of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kex {
    /// Static RSA key transport.
    Rsa,
    /// Ephemeral finite-field Diffie-Hellman.
    Dhe,
    /// Ephemeral elliptic-curve Diffie-Hellman.
    Ecdhe,
    /// Unauthenticated finite-field Diffie-Hellman.
    DhAnon,
    /// Unauthenticated elliptic-curve Diffie-Hellman.
    EcdhAnon,
    /// TLS 1.3: negotiated separately.
    Tls13,
}

/// Bulk cipher of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    /// No encryption.
    Null,
    /// RC4 stream cipher.
    Rc4,
    /// 40-bit export ciphers (RC4/RC2/DES40).
    Export,
    /// Single DES.
    Des,
    /// Triple DES in CBC mode.
    TripleDes,
    /// A 128-bit block cipher (AES, Camellia, ARIA, SEED, IDEA) in CBC mode.
    Cbc,
    /// An AEAD mode (GCM, CCM, ChaCha20-Poly1305).
    Aead,
}

/// Record MAC of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac {
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256/384 (TLS 1.2 only).
    Sha2,
    /// Integrity comes from the AEAD cipher (TLS 1.2+ only).
    Aead,
}

/// One cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// IANA code point.
    pub code: u16,
    /// IANA name.
    pub name: &'static str,
    /// Key exchange.
    pub kex: Kex,
    /// Bulk cipher.
    pub enc: Enc,
    /// MAC.
    pub mac: Mac,
}

impl Suite {
    /// Every weakness class that applies, in a stable order.
    pub fn classes(&self) -> Vec<WeakCipherClass> {
        let mut c = Vec::new();
        if self.enc == Enc::Null {
            c.push(WeakCipherClass::Null);
        }
        if matches!(self.kex, Kex::DhAnon | Kex::EcdhAnon) {
            c.push(WeakCipherClass::Anonymous);
        }
        if self.enc == Enc::Rc4 {
            c.push(WeakCipherClass::Rc4);
        }
        if self.enc == Enc::TripleDes {
            c.push(WeakCipherClass::TripleDes);
        }
        if matches!(self.enc, Enc::Export | Enc::Des) {
            c.push(WeakCipherClass::Export);
        }
        if matches!(self.enc, Enc::Cbc | Enc::TripleDes | Enc::Des | Enc::Export)
            && self.mac == Mac::Sha1
        {
            c.push(WeakCipherClass::CbcSha1);
        }
        if self.kex == Kex::Rsa {
            c.push(WeakCipherClass::StaticRsa);
        }
        c
    }

    /// Whether the suite is defined for TLS versions before 1.2 (SHA-2 MACs and AEADs are not).
    pub fn pre_tls12(&self) -> bool {
        matches!(self.mac, Mac::Md5 | Mac::Sha1)
    }
}

/// Looks a suite up by code point.
pub fn by_code(code: u16) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.code == code)
}

/// Suites with at least one weakness class.
pub fn weak_suites() -> impl Iterator<Item = &'static Suite> {
    SUITES.iter().filter(|s| !s.classes().is_empty())
}

/// TLS 1.3 suites, offered only in TLS 1.3 probes.
pub const TLS13_SUITES: [u16; 5] = [0x1301, 0x1302, 0x1303, 0x1304, 0x1305];

macro_rules! suites {
    ($($code:literal $name:literal $kex:ident $enc:ident $mac:ident;)*) => {
        /// All TLS 1.0-1.2 suites the prober knows.
        pub static SUITES: &[Suite] = &[
            $(Suite { code: $code, name: $name, kex: Kex::$kex, enc: Enc::$enc, mac: Mac::$mac },)*
        ];
    };
}

suites! {
    0x0001 "TLS_RSA_WITH_NULL_MD5" Rsa Null Md5;
    0x0002 "TLS_RSA_WITH_NULL_SHA" Rsa Null Sha1;
    0x003B "TLS_RSA_WITH_NULL_SHA256" Rsa Null Sha2;
    0x0003 "TLS_RSA_EXPORT_WITH_RC4_40_MD5" Rsa Export Md5;
    0x0004 "TLS_RSA_WITH_RC4_128_MD5" Rsa Rc4 Md5;
    0x0005 "TLS_RSA_WITH_RC4_128_SHA" Rsa Rc4 Sha1;
    0x0006 "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5" Rsa Export Md5;
    0x0007 "TLS_RSA_WITH_IDEA_CBC_SHA" Rsa Cbc Sha1;
    0x0008 "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA" Rsa Export Sha1;
    0x0009 "TLS_RSA_WITH_DES_CBC_SHA" Rsa Des Sha1;
    0x000A "TLS_RSA_WITH_3DES_EDE_CBC_SHA" Rsa TripleDes Sha1;
    0x002F "TLS_RSA_WITH_AES_128_CBC_SHA" Rsa Cbc Sha1;
    0x0035 "TLS_RSA_WITH_AES_256_CBC_SHA" Rsa Cbc Sha1;
    0x003C "TLS_RSA_WITH_AES_128_CBC_SHA256" Rsa Cbc Sha2;
    0x003D "TLS_RSA_WITH_AES_256_CBC_SHA256" Rsa Cbc Sha2;
    0x0041 "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA" Rsa Cbc Sha1;
    0x0084 "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA" Rsa Cbc Sha1;
    0x0096 "TLS_RSA_WITH_SEED_CBC_SHA" Rsa Cbc Sha1;
    0x009C "TLS_RSA_WITH_AES_128_GCM_SHA256" Rsa Aead Aead;
    0x009D "TLS_RSA_WITH_AES_256_GCM_SHA384" Rsa Aead Aead;
    0x00BA "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256" Rsa Cbc Sha2;
    0x00C0 "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256" Rsa Cbc Sha2;
    0xC03C "TLS_RSA_WITH_ARIA_128_CBC_SHA256" Rsa Cbc Sha2;
    0xC03D "TLS_RSA_WITH_ARIA_256_CBC_SHA384" Rsa Cbc Sha2;
    0xC050 "TLS_RSA_WITH_ARIA_128_GCM_SHA256" Rsa Aead Aead;
    0xC051 "TLS_RSA_WITH_ARIA_256_GCM_SHA384" Rsa Aead Aead;
    0xC09C "TLS_RSA_WITH_AES_128_CCM" Rsa Aead Aead;
    0xC09D "TLS_RSA_WITH_AES_256_CCM" Rsa Aead Aead;
    0xC0A0 "TLS_RSA_WITH_AES_128_CCM_8" Rsa Aead Aead;
    0xC0A1 "TLS_RSA_WITH_AES_256_CCM_8" Rsa Aead Aead;
    0x0011 "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA" Dhe Export Sha1;
    0x0012 "TLS_DHE_DSS_WITH_DES_CBC_SHA" Dhe Des Sha1;
    0x0013 "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA" Dhe TripleDes Sha1;
    0x0032 "TLS_DHE_DSS_WITH_AES_128_CBC_SHA" Dhe Cbc Sha1;
    0x0038 "TLS_DHE_DSS_WITH_AES_256_CBC_SHA" Dhe Cbc Sha1;
    0x0040 "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256" Dhe Cbc Sha2;
    0x006A "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256" Dhe Cbc Sha2;
    0x0044 "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA" Dhe Cbc Sha1;
    0x0087 "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA" Dhe Cbc Sha1;
    0x0099 "TLS_DHE_DSS_WITH_SEED_CBC_SHA" Dhe Cbc Sha1;
    0x00A2 "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256" Dhe Aead Aead;
    0x00A3 "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384" Dhe Aead Aead;
    0x0014 "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA" Dhe Export Sha1;
    0x0015 "TLS_DHE_RSA_WITH_DES_CBC_SHA" Dhe Des Sha1;
    0x0016 "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA" Dhe TripleDes Sha1;
    0x0033 "TLS_DHE_RSA_WITH_AES_128_CBC_SHA" Dhe Cbc Sha1;
    0x0039 "TLS_DHE_RSA_WITH_AES_256_CBC_SHA" Dhe Cbc Sha1;
    0x0045 "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA" Dhe Cbc Sha1;
    0x0088 "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA" Dhe Cbc Sha1;
    0x009A "TLS_DHE_RSA_WITH_SEED_CBC_SHA" Dhe Cbc Sha1;
    0x0067 "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256" Dhe Cbc Sha2;
    0x006B "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256" Dhe Cbc Sha2;
    0x00BE "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256" Dhe Cbc Sha2;
    0x00C4 "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256" Dhe Cbc Sha2;
    0x009E "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256" Dhe Aead Aead;
    0x009F "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384" Dhe Aead Aead;
    0xC044 "TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256" Dhe Cbc Sha2;
    0xC045 "TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384" Dhe Cbc Sha2;
    0xC052 "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256" Dhe Aead Aead;
    0xC053 "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384" Dhe Aead Aead;
    0xC09E "TLS_DHE_RSA_WITH_AES_128_CCM" Dhe Aead Aead;
    0xC09F "TLS_DHE_RSA_WITH_AES_256_CCM" Dhe Aead Aead;
    0xC0A2 "TLS_DHE_RSA_WITH_AES_128_CCM_8" Dhe Aead Aead;
    0xC0A3 "TLS_DHE_RSA_WITH_AES_256_CCM_8" Dhe Aead Aead;
    0xCCAA "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256" Dhe Aead Aead;
    0x0017 "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5" DhAnon Export Md5;
    0x0018 "TLS_DH_anon_WITH_RC4_128_MD5" DhAnon Rc4 Md5;
    0x0019 "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA" DhAnon Export Sha1;
    0x001A "TLS_DH_anon_WITH_DES_CBC_SHA" DhAnon Des Sha1;
    0x001B "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA" DhAnon TripleDes Sha1;
    0x0034 "TLS_DH_anon_WITH_AES_128_CBC_SHA" DhAnon Cbc Sha1;
    0x003A "TLS_DH_anon_WITH_AES_256_CBC_SHA" DhAnon Cbc Sha1;
    0x0046 "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA" DhAnon Cbc Sha1;
    0x0089 "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA" DhAnon Cbc Sha1;
    0x009B "TLS_DH_anon_WITH_SEED_CBC_SHA" DhAnon Cbc Sha1;
    0x006C "TLS_DH_anon_WITH_AES_128_CBC_SHA256" DhAnon Cbc Sha2;
    0x006D "TLS_DH_anon_WITH_AES_256_CBC_SHA256" DhAnon Cbc Sha2;
    0x00BF "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256" DhAnon Cbc Sha2;
    0x00C5 "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256" DhAnon Cbc Sha2;
    0x00A6 "TLS_DH_anon_WITH_AES_128_GCM_SHA256" DhAnon Aead Aead;
    0x00A7 "TLS_DH_anon_WITH_AES_256_GCM_SHA384" DhAnon Aead Aead;
    0xC046 "TLS_DH_anon_WITH_ARIA_128_CBC_SHA256" DhAnon Cbc Sha2;
    0xC047 "TLS_DH_anon_WITH_ARIA_256_CBC_SHA384" DhAnon Cbc Sha2;
    0xC05A "TLS_DH_anon_WITH_ARIA_128_GCM_SHA256" DhAnon Aead Aead;
    0xC05B "TLS_DH_anon_WITH_ARIA_256_GCM_SHA384" DhAnon Aead Aead;
    0xC006 "TLS_ECDHE_ECDSA_WITH_NULL_SHA" Ecdhe Null Sha1;
    0xC007 "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA" Ecdhe Rc4 Sha1;
    0xC008 "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA" Ecdhe TripleDes Sha1;
    0xC009 "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" Ecdhe Cbc Sha1;
    0xC00A "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA" Ecdhe Cbc Sha1;
    0xC023 "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC024 "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC02B "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" Ecdhe Aead Aead;
    0xC02C "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" Ecdhe Aead Aead;
    0xC072 "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC073 "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC048 "TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC049 "TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC05C "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256" Ecdhe Aead Aead;
    0xC05D "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384" Ecdhe Aead Aead;
    0xC0AC "TLS_ECDHE_ECDSA_WITH_AES_128_CCM" Ecdhe Aead Aead;
    0xC0AD "TLS_ECDHE_ECDSA_WITH_AES_256_CCM" Ecdhe Aead Aead;
    0xC0AE "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8" Ecdhe Aead Aead;
    0xC0AF "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8" Ecdhe Aead Aead;
    0xCCA9 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" Ecdhe Aead Aead;
    0xC010 "TLS_ECDHE_RSA_WITH_NULL_SHA" Ecdhe Null Sha1;
    0xC011 "TLS_ECDHE_RSA_WITH_RC4_128_SHA" Ecdhe Rc4 Sha1;
    0xC012 "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA" Ecdhe TripleDes Sha1;
    0xC013 "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA" Ecdhe Cbc Sha1;
    0xC014 "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" Ecdhe Cbc Sha1;
    0xC027 "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC028 "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC02F "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" Ecdhe Aead Aead;
    0xC030 "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" Ecdhe Aead Aead;
    0xC076 "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC077 "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC04C "TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256" Ecdhe Cbc Sha2;
    0xC04D "TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384" Ecdhe Cbc Sha2;
    0xC060 "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256" Ecdhe Aead Aead;
    0xC061 "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384" Ecdhe Aead Aead;
    0xCCA8 "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" Ecdhe Aead Aead;
    0xC015 "TLS_ECDH_anon_WITH_NULL_SHA" EcdhAnon Null Sha1;
    0xC016 "TLS_ECDH_anon_WITH_RC4_128_SHA" EcdhAnon Rc4 Sha1;
    0xC017 "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA" EcdhAnon TripleDes Sha1;
    0xC018 "TLS_ECDH_anon_WITH_AES_128_CBC_SHA" EcdhAnon Cbc Sha1;
    0xC019 "TLS_ECDH_anon_WITH_AES_256_CBC_SHA" EcdhAnon Cbc Sha1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique() {
        let codes: HashSet<u16> = SUITES.iter().map(|s| s.code).collect();
        assert_eq!(codes.len(), SUITES.len());
    }

    #[test]
    fn classifies_suites() {
        let get = |c| by_code(c).expect("known suite").classes();
        use WeakCipherClass::*;
        assert_eq!(get(0x000A), vec![TripleDes, CbcSha1, StaticRsa]);
        assert_eq!(get(0x0018), vec![Anonymous, Rc4]);
        assert_eq!(get(0xC015), vec![Null, Anonymous]);
        assert_eq!(get(0xC013), vec![CbcSha1]);
        assert_eq!(get(0x009C), vec![StaticRsa]);
        assert_eq!(get(0x0009), vec![Export, CbcSha1, StaticRsa]);
        assert!(get(0xC02F).is_empty());
        assert!(get(0xCCA8).is_empty());
        assert!(by_code(0xC02F).is_some_and(|s| !s.pre_tls12()));
        assert!(by_code(0xC013).is_some_and(|s| s.pre_tls12()));
    }
}
