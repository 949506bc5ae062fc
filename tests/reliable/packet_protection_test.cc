#include "reliable/packet_protection.h"

#include <sodium.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace udpmsg::reliable {
namespace {

using ::testing::HasSubstr;

KeyPair::Seed SeedOf(uint8_t tag) {
  KeyPair::Seed seed{};
  for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<uint8_t>(tag + 7 * i);
  return seed;
}

Psk PskOf(uint8_t tag) {
  Psk psk;
  for (size_t i = 0; i < psk.bytes.size(); ++i) psk.bytes[i] = static_cast<uint8_t>(tag ^ i);
  return psk;
}

// A header as the codec would prepend it: version, connection id, packet
// number (the exact layout does not matter to the protector).
std::string Header(uint64_t pn) { return absl::StrCat("\x02", "CID12345", pn, "|"); }

struct Sides {
  SessionKeys client;
  SessionKeys server;
};

constexpr uint64_t kClientCid = 0x1111222233334444;
constexpr uint64_t kServerCid = 0x5555666677778888;

Sides Derive(const std::optional<Psk>& client_psk, const std::optional<Psk>& server_psk) {
  const KeyPair client = KeyPair::FromSeed(SeedOf(1));
  const KeyPair server = KeyPair::FromSeed(SeedOf(2));
  const std::string transcript = HandshakeTranscript(client.public_key(), server.public_key(),
                                                     kClientCid, kServerCid);
  absl::StatusOr<SessionKeys> c =
      DeriveSessionKeys(Role::kClient, client, server.public_key(), transcript, client_psk);
  absl::StatusOr<SessionKeys> s =
      DeriveSessionKeys(Role::kServer, server, client.public_key(), transcript, server_psk);
  EXPECT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(s.ok()) << s.status();
  return Sides{*c, *s};
}

TEST(KeyPairTest, SeededPairsAreDeterministicAndDistinct) {
  EXPECT_EQ(KeyPair::FromSeed(SeedOf(1)).public_key(), KeyPair::FromSeed(SeedOf(1)).public_key());
  EXPECT_NE(KeyPair::FromSeed(SeedOf(1)).public_key(), KeyPair::FromSeed(SeedOf(2)).public_key());
  EXPECT_EQ(KeyPair::FromSeed(SeedOf(1)).public_key().size(), kPublicKeyBytes);
  EXPECT_NE(KeyPair::Generate().public_key(), KeyPair::Generate().public_key());
}

TEST(DeriveSessionKeysTest, BothSidesAgreeWithoutPsk) {
  const Sides sides = Derive(std::nullopt, std::nullopt);
  EXPECT_EQ(sides.client.tx, sides.server.rx);
  EXPECT_EQ(sides.client.rx, sides.server.tx);
  EXPECT_NE(sides.client.tx, sides.client.rx);
}

TEST(DeriveSessionKeysTest, BothSidesAgreeWithPskAndPskChangesTheKeys) {
  const Sides with = Derive(PskOf(9), PskOf(9));
  EXPECT_EQ(with.client.tx, with.server.rx);
  EXPECT_EQ(with.client.rx, with.server.tx);
  const Sides without = Derive(std::nullopt, std::nullopt);
  EXPECT_NE(with.client.tx, without.client.tx);
  EXPECT_NE(with.client.rx, without.client.rx);
}

TEST(DeriveSessionKeysTest, DifferentPsksCannotTalk) {
  const Sides sides = Derive(PskOf(9), PskOf(10));
  EXPECT_NE(sides.client.tx, sides.server.rx);
  EXPECT_NE(sides.client.rx, sides.server.tx);
  PacketProtector client(sides.client);
  PacketProtector server(sides.server);
  absl::StatusOr<std::string> sealed = client.Seal(0, Header(0), "hello room");
  ASSERT_TRUE(sealed.ok());
  absl::StatusOr<std::string> opened = server.Open(0, Header(0), *sealed);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(opened.status().message(), HasSubstr("authentication failed"));
  EXPECT_FALSE(server.largest_opened().has_value());
}

TEST(DeriveSessionKeysTest, PskOnOneSideOnlyCannotTalk) {
  const Sides sides = Derive(PskOf(9), std::nullopt);
  EXPECT_NE(sides.client.tx, sides.server.rx);
}

TEST(DeriveSessionKeysTest, TranscriptMismatchGivesDifferentKeys) {
  const KeyPair client = KeyPair::FromSeed(SeedOf(1));
  const KeyPair server = KeyPair::FromSeed(SeedOf(2));
  const std::string t1 =
      HandshakeTranscript(client.public_key(), server.public_key(), kClientCid, kServerCid);
  const std::string t2 =
      HandshakeTranscript(client.public_key(), server.public_key(), kClientCid, kServerCid + 1);
  const std::string t3 = HandshakeTranscript(client.public_key(), server.public_key(),
                                             kClientCid, kServerCid, "max_datagram=1200");
  EXPECT_NE(t1, t2);
  EXPECT_NE(t1, t3);
  absl::StatusOr<SessionKeys> c =
      DeriveSessionKeys(Role::kClient, client, server.public_key(), t1, std::nullopt);
  for (const std::string& other : {t2, t3}) {
    absl::StatusOr<SessionKeys> s =
        DeriveSessionKeys(Role::kServer, server, client.public_key(), other, std::nullopt);
    ASSERT_TRUE(c.ok() && s.ok());
    EXPECT_NE(c->tx, s->rx);
    EXPECT_NE(c->rx, s->tx);
  }
}

TEST(DeriveSessionKeysTest, BadPeerPublicKeysAreRejected) {
  const KeyPair mine = KeyPair::FromSeed(SeedOf(1));
  for (size_t length : {0, 1, 31, 33, 64}) {
    absl::StatusOr<SessionKeys> keys = DeriveSessionKeys(
        Role::kClient, mine, std::string(length, '\x09'), "t", std::nullopt);
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument) << length;
    EXPECT_THAT(keys.status().message(), HasSubstr("public key")) << length;
  }
  // Low-order points: no shared secret (crypto_scalarmult gives all zeros).
  std::string zero(kPublicKeyBytes, '\0');
  std::string one = zero;
  one[0] = 1;
  for (const std::string& bad : {zero, one}) {
    for (Role role : {Role::kClient, Role::kServer}) {
      absl::StatusOr<SessionKeys> keys = DeriveSessionKeys(role, mine, bad, "t", PskOf(1));
      EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(keys.status().message(), HasSubstr("key exchange failed"));
    }
  }
}

TEST(PskConfirmationTest, VerifiesOnlyWithTheSameKeyTranscriptAndRole) {
  const std::string transcript = "transcript bytes";
  const std::string mac = PskConfirmation(PskOf(3), transcript, Role::kServer);
  EXPECT_EQ(mac.size(), kPskConfirmationBytes);
  EXPECT_EQ(mac, PskConfirmation(PskOf(3), transcript, Role::kServer));
  EXPECT_TRUE(VerifyPskConfirmation(PskOf(3), transcript, Role::kServer, mac));
  EXPECT_FALSE(VerifyPskConfirmation(PskOf(4), transcript, Role::kServer, mac));
  EXPECT_FALSE(VerifyPskConfirmation(PskOf(3), "transcript bytez", Role::kServer, mac));
  EXPECT_FALSE(VerifyPskConfirmation(PskOf(3), transcript, Role::kClient, mac));
  EXPECT_FALSE(VerifyPskConfirmation(PskOf(3), transcript, Role::kServer, mac.substr(1)));
  EXPECT_FALSE(VerifyPskConfirmation(PskOf(3), transcript, Role::kServer, ""));
  for (size_t bit = 0; bit < mac.size() * 8; ++bit) {
    std::string bad = mac;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_FALSE(VerifyPskConfirmation(PskOf(3), transcript, Role::kServer, bad)) << bit;
  }
}

class PacketProtectorTest : public ::testing::Test {
 protected:
  PacketProtectorTest() : sides_(Derive(PskOf(5), PskOf(5))) {
    client_.emplace(sides_.client);
    server_.emplace(sides_.server);
  }

  std::string Seal(uint64_t pn, absl::string_view plain) {
    absl::StatusOr<std::string> sealed = client_->Seal(pn, Header(pn), plain);
    EXPECT_TRUE(sealed.ok()) << sealed.status();
    return sealed.ok() ? *sealed : "";
  }

  Sides sides_;
  std::optional<PacketProtector> client_;
  std::optional<PacketProtector> server_;
};

TEST_F(PacketProtectorTest, RoundTripAddsExactlyTheTag) {
  for (const std::string& plain : {std::string(), std::string("x"), std::string(1150, 'p')}) {
    const uint64_t pn = client_->largest_sealed().has_value() ? *client_->largest_sealed() + 1 : 0;
    const std::string sealed = Seal(pn, plain);
    EXPECT_EQ(sealed.size(), plain.size() + kSealOverheadBytes);
    if (!plain.empty()) {
      EXPECT_EQ(sealed.find(plain), std::string::npos);
    }
    absl::StatusOr<std::string> opened = server_->Open(pn, Header(pn), sealed);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, plain);
  }
}

TEST_F(PacketProtectorTest, BothDirectionsWork) {
  absl::StatusOr<std::string> sealed = server_->Seal(7, Header(7), "from server");
  ASSERT_TRUE(sealed.ok());
  absl::StatusOr<std::string> opened = client_->Open(7, Header(7), *sealed);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, "from server");
  // A packet reflected back to its sender does not open (directional keys).
  EXPECT_THAT(server_->Open(7, Header(7), *sealed).status().message(),
              HasSubstr("authentication failed"));
}

TEST_F(PacketProtectorTest, ManyPacketsOutOfOrderWithinTheWindow) {
  constexpr uint64_t kPackets = 20000;
  std::vector<std::string> sealed;
  for (uint64_t pn = 0; pn < kPackets; ++pn) sealed.push_back(Seal(pn, absl::StrCat("m", pn)));
  // Shuffle within blocks of 512: every packet arrives less than the window
  // behind the largest one seen.
  std::vector<uint64_t> order(kPackets);
  for (uint64_t i = 0; i < kPackets; ++i) order[i] = i;
  std::mt19937_64 rng(42);
  for (uint64_t start = 0; start < kPackets; start += 512) {
    std::shuffle(order.begin() + start, order.begin() + std::min(start + 512, kPackets), rng);
  }
  for (uint64_t pn : order) {
    absl::StatusOr<std::string> opened = server_->Open(pn, Header(pn), sealed[pn]);
    ASSERT_TRUE(opened.ok()) << pn << ": " << opened.status();
    EXPECT_EQ(*opened, absl::StrCat("m", pn));
  }
  EXPECT_EQ(server_->largest_opened(), kPackets - 1);
  // And every one of the last kReplayWindow is now a replay.
  for (uint64_t pn = kPackets - kReplayWindow; pn < kPackets; ++pn) {
    EXPECT_THAT(server_->Open(pn, Header(pn), sealed[pn]).status().message(),
                HasSubstr(absl::StrCat("replayed packet ", pn)));
  }
}

TEST_F(PacketProtectorTest, ReplayIsRejected) {
  const std::string a = Seal(5, "a");
  ASSERT_TRUE(server_->Open(5, Header(5), a).ok());
  absl::StatusOr<std::string> again = server_->Open(5, Header(5), a);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(again.status().message(), HasSubstr("replayed packet 5"));
  // Also below the largest: open 9, then 5 again, then 7 fresh.
  const std::string b = Seal(7, "b");
  const std::string c = Seal(9, "c");
  ASSERT_TRUE(server_->Open(9, Header(9), c).ok());
  EXPECT_THAT(server_->Open(5, Header(5), a).status().message(), HasSubstr("replayed packet 5"));
  ASSERT_TRUE(server_->Open(7, Header(7), b).ok());
  EXPECT_THAT(server_->Open(7, Header(7), b).status().message(), HasSubstr("replayed packet 7"));
}

TEST_F(PacketProtectorTest, TooOldIsRejectedAtTheExactEdge) {
  const std::string p0 = Seal(0, "0");
  const std::string p976 = Seal(976, "976");
  const std::string p977 = Seal(977, "977");
  const std::string p2000 = Seal(2000, "2000");
  ASSERT_TRUE(server_->Open(0, Header(0), p0).ok());
  ASSERT_TRUE(server_->Open(2000, Header(2000), p2000).ok());
  absl::StatusOr<std::string> old = server_->Open(976, Header(976), p976);  // 2000 - 1024
  EXPECT_EQ(old.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(old.status().message(), HasSubstr("packet 976 too old"));
  EXPECT_THAT(server_->Open(0, Header(0), p0).status().message(), HasSubstr("too old"));
  EXPECT_TRUE(server_->Open(977, Header(977), p977).ok());  // 2000 - 1023
}

TEST_F(PacketProtectorTest, SlidingWindowForgetsAliasedBits) {
  // 10 and 10 + 1024 share a bitmap slot; 1034 must still open after 10.
  const std::string p10 = Seal(10, "a");
  const std::string p500 = Seal(500, "b");
  const std::string p1034 = Seal(1034, "c");
  const std::string p1100 = Seal(1100, "d");
  ASSERT_TRUE(server_->Open(10, Header(10), p10).ok());
  ASSERT_TRUE(server_->Open(500, Header(500), p500).ok());
  ASSERT_TRUE(server_->Open(1100, Header(1100), p1100).ok());
  ASSERT_TRUE(server_->Open(1034, Header(1034), p1034).ok());
  EXPECT_THAT(server_->Open(500, Header(500), p500).status().message(),
              HasSubstr("replayed packet 500"));
  EXPECT_THAT(server_->Open(10, Header(10), p10).status().message(), HasSubstr("too old"));
}

TEST_F(PacketProtectorTest, SealRefusesReuseAndTheNumberLimit) {
  ASSERT_TRUE(client_->Seal(3, Header(3), "x").ok());
  absl::StatusOr<std::string> again = client_->Seal(3, Header(3), "y");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->Seal(2, Header(2), "y").status().code(),
            absl::StatusCode::kFailedPrecondition);
  const uint64_t limit = kMaxProtectedPacketNumber;
  EXPECT_EQ(client_->Seal(limit, Header(limit), "y").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->Seal(UINT64_MAX, Header(1), "y").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->largest_sealed(), 3u);
  absl::StatusOr<std::string> last = client_->Seal(limit - 1, Header(limit - 1), "last");
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(server_->Open(limit - 1, Header(limit - 1), *last).ok());
  EXPECT_THAT(server_->Open(limit, Header(limit), *last).status().message(),
              HasSubstr("limit"));
}

TEST_F(PacketProtectorTest, EveryFlippedBitIsRejectedAndTheWindowDoesNotMove) {
  const std::string plain = "a message worth protecting";
  const std::string sealed = Seal(8, plain);
  const std::string header = Header(8);
  const std::string datagram = header + sealed;
  for (size_t bit = 0; bit < datagram.size() * 8; ++bit) {
    std::string bad = datagram;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    absl::StatusOr<std::string> opened =
        server_->Open(8, absl::string_view(bad).substr(0, header.size()),
                      absl::string_view(bad).substr(header.size()));
    EXPECT_THAT(opened.status().message(), HasSubstr("authentication failed")) << bit;
  }
  // Wrong packet number, truncated, extended, forged tag.
  EXPECT_FALSE(server_->Open(9, header, sealed).ok());
  EXPECT_FALSE(server_->Open(8, header, sealed.substr(0, sealed.size() - 1)).ok());
  EXPECT_FALSE(server_->Open(8, header, sealed + "x").ok());
  EXPECT_FALSE(server_->Open(8, header, sealed.substr(0, kAeadTagBytes - 1)).ok());
  std::string forged = sealed;
  forged.replace(forged.size() - kAeadTagBytes, kAeadTagBytes, std::string(kAeadTagBytes, 'T'));
  EXPECT_THAT(server_->Open(8, header, forged).status().message(),
              HasSubstr("authentication failed"));
  EXPECT_FALSE(server_->largest_opened().has_value());
  // The genuine packet with that number still opens, once.
  absl::StatusOr<std::string> opened = server_->Open(8, header, sealed);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plain);
  EXPECT_THAT(server_->Open(8, header, sealed).status().message(), HasSubstr("replayed"));
}

TEST_F(PacketProtectorTest, ForgeryAheadOfTheWindowDoesNotSlideIt) {
  const std::string p1 = Seal(1, "one");
  const std::string p2 = Seal(2, "two");
  ASSERT_TRUE(server_->Open(2, Header(2), p2).ok());
  // A forged packet far ahead would push 1 out of the window if it counted.
  EXPECT_FALSE(server_->Open(1'000'000, Header(1'000'000), p2).ok());
  EXPECT_EQ(server_->largest_opened(), 2u);
  EXPECT_TRUE(server_->Open(1, Header(1), p1).ok());
}

TEST_F(PacketProtectorTest, RandomGarbageIsRejectedWithoutSideEffects) {
  std::vector<std::string> sealed;
  for (uint64_t pn = 0; pn < 64; ++pn) sealed.push_back(Seal(pn, absl::StrCat("msg", pn)));
  for (uint64_t pn = 0; pn < 64; pn += 2) ASSERT_TRUE(server_->Open(pn, Header(pn), sealed[pn]).ok());
  const std::optional<uint64_t> before = server_->largest_opened();

  std::mt19937_64 rng(20240611);
  for (int i = 0; i < 100000; ++i) {
    uint64_t pn;
    switch (rng() % 4) {
      case 0: pn = rng() % 128; break;                   // around the window
      case 1: pn = rng() % kMaxProtectedPacketNumber; break;
      case 2: pn = rng(); break;                         // often beyond the limit
      default: pn = 63 + rng() % 4096; break;            // ahead of the window
    }
    std::string header(rng() % 24, '\0');
    for (char& ch : header) ch = static_cast<char>(rng());
    std::string body(rng() % 200, '\0');
    for (char& ch : body) ch = static_cast<char>(rng());
    if (i % 10 == 0 && pn < 64) {  // a real ciphertext under a wrong header
      body = sealed[pn];
    }
    absl::StatusOr<std::string> opened = server_->Open(pn, header, body);
    ASSERT_FALSE(opened.ok()) << i;
    ASSERT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(server_->largest_opened(), before);
  // Unopened genuine packets still open; opened ones are still replays.
  for (uint64_t pn = 1; pn < 64; pn += 2) {
    EXPECT_TRUE(server_->Open(pn, Header(pn), sealed[pn]).ok()) << pn;
  }
  for (uint64_t pn = 0; pn < 64; ++pn) {
    EXPECT_THAT(server_->Open(pn, Header(pn), sealed[pn]).status().message(),
                HasSubstr("replayed"));
  }
}

// ------------------------------------------------------------- key files

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  return path;
}

Psk HashOf(absl::string_view text) {
  Psk psk;
  crypto_generichash(psk.bytes.data(), psk.bytes.size(),
                     reinterpret_cast<const uint8_t*>(text.data()), text.size(), nullptr, 0);
  return psk;
}

TEST(KeyFileTest, HexKeyIsUsedAsIs) {
  std::string hex;
  Psk expected;
  for (size_t i = 0; i < kPskBytes; ++i) {
    expected.bytes[i] = static_cast<uint8_t>(0xA0 + i);
    absl::StrAppend(&hex, absl::Hex(expected.bytes[i], absl::kZeroPad2));
  }
  absl::StatusOr<Psk> psk = ReadKeyFile(WriteFile("hex.key", hex + "\n"));
  ASSERT_TRUE(psk.ok()) << psk.status();
  EXPECT_EQ(psk->bytes, expected.bytes);
  std::string upper = hex;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  psk = ReadKeyFile(WriteFile("upper.key", "  " + upper + "\r\n"));
  ASSERT_TRUE(psk.ok()) << psk.status();
  EXPECT_EQ(psk->bytes, expected.bytes);
}

TEST(KeyFileTest, GeneratedContentsRoundTrip) {
  const std::string contents = GenerateKeyFileContents();
  ASSERT_EQ(contents.size(), 2 * kPskBytes + 1);
  EXPECT_EQ(contents.back(), '\n');
  EXPECT_NE(contents, GenerateKeyFileContents());
  absl::StatusOr<Psk> psk = ReadKeyFile(WriteFile("generated.key", contents));
  ASSERT_TRUE(psk.ok()) << psk.status();
  std::string hex;
  for (uint8_t b : psk->bytes) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  EXPECT_EQ(hex + "\n", contents);
}

TEST(KeyFileTest, TextIsHashedAfterTrimmingWhitespace) {
  absl::StatusOr<Psk> a = ReadKeyFile(WriteFile("a.key", "correct horse battery staple\n"));
  absl::StatusOr<Psk> b = ReadKeyFile(WriteFile("b.key", "  correct horse battery staple  "));
  absl::StatusOr<Psk> c = ReadKeyFile(WriteFile("c.key", "correct horse battery stapler"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->bytes, HashOf("correct horse battery staple").bytes);
  EXPECT_EQ(a->bytes, b->bytes);
  EXPECT_NE(a->bytes, c->bytes);
  // 63 hex digits, or 64 characters that are not all hex, are text.
  const std::string almost(63, 'a');
  absl::StatusOr<Psk> d = ReadKeyFile(WriteFile("d.key", almost));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->bytes, HashOf(almost).bytes);
  const std::string not_hex = std::string(63, 'a') + "g";
  absl::StatusOr<Psk> e = ReadKeyFile(WriteFile("e.key", not_hex));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->bytes, HashOf(not_hex).bytes);
}

TEST(KeyFileTest, ClearErrorsNamingThePath) {
  const std::string missing = absl::StrCat(::testing::TempDir(), "/no-such.key");
  absl::StatusOr<Psk> psk = ReadKeyFile(missing);
  EXPECT_EQ(psk.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(psk.status().message(), HasSubstr(missing));

  const std::string empty = WriteFile("empty.key", "");
  psk = ReadKeyFile(empty);
  EXPECT_EQ(psk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(psk.status().message(), HasSubstr(empty));
  EXPECT_THAT(psk.status().message(), HasSubstr("empty"));

  psk = ReadKeyFile(WriteFile("blank.key", " \n\t\n"));
  EXPECT_THAT(psk.status().message(), HasSubstr("empty"));

  const std::string dir = absl::StrCat(::testing::TempDir(), "/keydir");
  ::mkdir(dir.c_str(), 0700);
  psk = ReadKeyFile(dir);
  EXPECT_EQ(psk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(psk.status().message(), HasSubstr(dir));

  psk = ReadKeyFile(WriteFile("huge.key", std::string(100 << 10, 'k')));
  EXPECT_EQ(psk.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KeyFileTest, WrongRoomKeyIsDetectedByTheConfirmation) {
  absl::StatusOr<Psk> room = ReadKeyFile(WriteFile("room.key", "room secret"));
  absl::StatusOr<Psk> guess = ReadKeyFile(WriteFile("guess.key", "room secrets"));
  ASSERT_TRUE(room.ok() && guess.ok());
  const std::string transcript = "t";
  const std::string from_server = PskConfirmation(*room, transcript, Role::kServer);
  EXPECT_TRUE(VerifyPskConfirmation(*room, transcript, Role::kServer, from_server));
  EXPECT_FALSE(VerifyPskConfirmation(*guess, transcript, Role::kServer, from_server));
}

TEST(RoomProofTest, EachProofVerifiesOnlyWithTheKeyAndEveryInputItIsBoundTo) {
  Psk key, other;
  key.bytes.fill(3);
  other.bytes.fill(4);
  const std::string cookie(24, 'c');
  const std::string pk(kPublicKeyBytes, 'k');
  const uint64_t cid = 0x0102030405060708;

  const std::string hello = HelloKeyProof(key, cookie, cid, pk);
  ASSERT_EQ(hello.size(), kRoomProofBytes);
  EXPECT_TRUE(VerifyHelloKeyProof(key, cookie, cid, pk, hello));
  EXPECT_FALSE(VerifyHelloKeyProof(other, cookie, cid, pk, hello));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie + "x", cid, pk, hello));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie, cid + 1, pk, hello));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie, cid, std::string(kPublicKeyBytes, 'K'), hello));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie, cid, pk, hello.substr(1)));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie, cid, pk, ""));

  const std::string challenge = ChallengeKeyProof(key, cookie, cid);
  EXPECT_TRUE(VerifyChallengeKeyProof(key, cookie, cid, challenge));
  EXPECT_FALSE(VerifyChallengeKeyProof(other, cookie, cid, challenge));
  EXPECT_FALSE(VerifyChallengeKeyProof(key, cookie, cid + 1, challenge));

  const std::string close = CloseAuth(key, cid, cookie, 5, "server full");
  EXPECT_TRUE(VerifyCloseAuth(key, cid, cookie, 5, "server full", close));
  EXPECT_FALSE(VerifyCloseAuth(other, cid, cookie, 5, "server full", close));
  EXPECT_FALSE(VerifyCloseAuth(key, cid, cookie, 4, "server full", close));
  EXPECT_FALSE(VerifyCloseAuth(key, cid, cookie, 5, "server ful", close));
  EXPECT_FALSE(VerifyCloseAuth(key, cid, "", 5, "server full", close));

  // Domain separation: no proof of one kind verifies as another, and the
  // length prefixes keep field boundaries apart.
  EXPECT_FALSE(VerifyChallengeKeyProof(key, cookie, cid, hello));
  EXPECT_FALSE(VerifyHelloKeyProof(key, cookie, cid, "", challenge));
  EXPECT_NE(HelloKeyProof(key, "ab", cid, "c"), HelloKeyProof(key, "a", cid, "bc"));
  EXPECT_NE(PskConfirmation(key, cookie, Role::kServer).substr(0, kRoomProofBytes), challenge);
}

// -------------------------------------------------------- server identity

// Both sides of an identified handshake (Noise NK over the ephemeral
// exchange): the client with its ephemeral key and the static public key it
// was shown, the server with its static key.
struct Identified {
  std::string transcript;
  absl::StatusOr<SessionKeys> client;
  absl::StatusOr<SessionKeys> server;
};

Identified DeriveIdentified(const KeyPair& server_static, absl::string_view shown_static) {
  const KeyPair client = KeyPair::FromSeed(SeedOf(1));
  const KeyPair server = KeyPair::FromSeed(SeedOf(2));
  Identified out{HandshakeTranscript(client.public_key(), server.public_key(), kClientCid,
                                     kServerCid, shown_static),
                 absl::UnknownError("unset"), absl::UnknownError("unset")};
  absl::StatusOr<IdentitySecret> client_es = IdentityExchange(Role::kClient, client, shown_static);
  absl::StatusOr<IdentitySecret> server_es =
      IdentityExchange(Role::kServer, server_static, client.public_key());
  EXPECT_TRUE(client_es.ok()) << client_es.status();
  EXPECT_TRUE(server_es.ok()) << server_es.status();
  // The server's transcript has its own static key.
  const std::string server_transcript =
      HandshakeTranscript(client.public_key(), server.public_key(), kClientCid, kServerCid,
                          server_static.public_key());
  out.client = DeriveSessionKeys(Role::kClient, client, server.public_key(), out.transcript,
                                 std::nullopt, &*client_es);
  out.server = DeriveSessionKeys(Role::kServer, server, client.public_key(), server_transcript,
                                 std::nullopt, &*server_es);
  return out;
}

TEST(ServerIdentityTest, BothSidesAgreeAndEsChangesTheSessionKeys) {
  const KeyPair identity = KeyPair::FromSeed(SeedOf(40));
  const Identified sides = DeriveIdentified(identity, identity.public_key());
  ASSERT_TRUE(sides.client.ok() && sides.server.ok());
  EXPECT_EQ(sides.client->tx, sides.server->rx);
  EXPECT_EQ(sides.client->rx, sides.server->tx);
  // Same ephemeral keys and connection ids without an identity: other keys.
  const Sides plain = Derive(std::nullopt, std::nullopt);
  EXPECT_NE(sides.client->tx, plain.client.tx);
  EXPECT_NE(sides.client->rx, plain.client.rx);
  // Same transcript, es from another identity: other keys again.
  const KeyPair other = KeyPair::FromSeed(SeedOf(41));
  const KeyPair client = KeyPair::FromSeed(SeedOf(1));
  absl::StatusOr<IdentitySecret> wrong_es = IdentityExchange(Role::kClient, client,
                                                             other.public_key());
  ASSERT_TRUE(wrong_es.ok());
  absl::StatusOr<SessionKeys> wrong =
      DeriveSessionKeys(Role::kClient, client, KeyPair::FromSeed(SeedOf(2)).public_key(),
                        sides.transcript, std::nullopt, &*wrong_es);
  ASSERT_TRUE(wrong.ok());
  EXPECT_NE(wrong->tx, sides.client->tx);
}

TEST(ServerIdentityTest, ConfirmationProvesTheStaticSecretAndBindsTheShownKey) {
  const KeyPair identity = KeyPair::FromSeed(SeedOf(40));
  const Identified good = DeriveIdentified(identity, identity.public_key());
  ASSERT_TRUE(good.client.ok() && good.server.ok());
  const std::string confirmation =
      ServerKeyConfirmation(*good.server, Role::kServer, good.transcript);
  EXPECT_EQ(confirmation.size(), kKeyConfirmationBytes);
  EXPECT_TRUE(
      VerifyServerKeyConfirmation(*good.client, Role::kClient, good.transcript, confirmation));
  EXPECT_FALSE(VerifyServerKeyConfirmation(*good.client, Role::kClient, good.transcript,
                                           confirmation.substr(1)));
  // A man in the middle shows the client the real server's static key but
  // holds only its own static secret: the client's keys (with the real es)
  // do not verify the MAC it can make.
  const KeyPair impostor = KeyPair::FromSeed(SeedOf(42));
  const Identified mitm = DeriveIdentified(impostor, identity.public_key());
  ASSERT_TRUE(mitm.client.ok() && mitm.server.ok());
  EXPECT_NE(mitm.client->tx, mitm.server->rx);
  EXPECT_FALSE(VerifyServerKeyConfirmation(
      *mitm.client, Role::kClient, mitm.transcript,
      ServerKeyConfirmation(*mitm.server, Role::kServer, mitm.transcript)));
  // The genuine confirmation, relayed with the static key swapped for the
  // impostor's (whose secret the impostor holds), fails too: the transcript
  // and es changed.
  const Identified swapped = DeriveIdentified(impostor, impostor.public_key());
  ASSERT_TRUE(swapped.client.ok());
  EXPECT_FALSE(VerifyServerKeyConfirmation(*swapped.client, Role::kClient, swapped.transcript,
                                           confirmation));
}

TEST(ServerIdentityTest, ExchangeRejectsBadKeys) {
  const KeyPair mine = KeyPair::FromSeed(SeedOf(3));
  EXPECT_EQ(IdentityExchange(Role::kClient, mine, "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(IdentityExchange(Role::kClient, mine, std::string(kPublicKeyBytes, '\0'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ServerIdentityTest, SecretKeyGivesTheSamePairAsTheGenerator) {
  const KeyPair seeded = KeyPair::FromSeed(SeedOf(9));
  absl::StatusOr<KeyPair> again = KeyPair::FromSecretKey(absl::string_view(
      reinterpret_cast<const char*>(seeded.secret_key_data()), kPublicKeyBytes));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->public_key(), seeded.public_key());
  EXPECT_FALSE(KeyPair::FromSecretKey("short").ok());
}

TEST(ServerIdentityTest, FingerprintsAreStableDistinctAndParse) {
  const KeyPair a = KeyPair::FromSeed(SeedOf(5));
  const std::string fa = IdentityFingerprint(a.public_key());
  EXPECT_EQ(fa.size(), std::string(kFingerprintPrefix).size() + 2 * kFingerprintDigestBytes);
  EXPECT_EQ(fa.rfind(kFingerprintPrefix, 0), 0u);
  EXPECT_EQ(fa, IdentityFingerprint(a.public_key()));
  EXPECT_NE(fa, IdentityFingerprint(KeyPair::FromSeed(SeedOf(6)).public_key()));
  EXPECT_EQ(IdentityFingerprint(""), "udpmsg-id:(none)");
  EXPECT_EQ(IdentityFingerprint("xyz"), "udpmsg-id:(invalid)");

  std::string upper = fa;
  std::transform(upper.begin() + 10, upper.end(), upper.begin() + 10,
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  absl::StatusOr<std::string> parsed = ParseIdentityFingerprint("  " + upper + "\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, fa);
  for (const std::string& bad : {std::string(""), fa.substr(10), fa.substr(0, fa.size() - 1),
                                fa + "0", "udpmsg-id:" + std::string(40, 'g')}) {
    absl::StatusOr<std::string> p = ParseIdentityFingerprint(bad);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(p.status().message(), HasSubstr("udpmsg keygen --identity")) << bad;
  }
}

TEST(ServerIdentityTest, IdentityFileRoundTripsAndErrorsNameThePath) {
  std::string fingerprint;
  const std::string contents = GenerateIdentityFileContents(&fingerprint);
  EXPECT_THAT(contents, HasSubstr(fingerprint));  // in the comment line
  absl::StatusOr<KeyPair> pair = ReadIdentityFile(WriteFile("server.id", contents));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(IdentityFingerprint(pair->public_key()), fingerprint);
  std::string other;
  GenerateIdentityFileContents(&other);
  EXPECT_NE(other, fingerprint);

  const std::string missing = absl::StrCat(::testing::TempDir(), "/no-such.id");
  EXPECT_EQ(ReadIdentityFile(missing).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ReadIdentityFile(missing).status().message(), HasSubstr(missing));
  for (const std::string& bad : {std::string(""), std::string("# only a comment\n"),
                                std::string(63, 'a'), std::string(64, 'z')}) {
    const std::string path = WriteFile("bad.id", bad);
    absl::StatusOr<KeyPair> p = ReadIdentityFile(path);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(p.status().message(), HasSubstr(path));
  }
}

// ------------------------------------------------------ AEAD negotiation

constexpr uint32_t kChaChaBit = static_cast<uint32_t>(Aead::kChaCha20Poly1305);
constexpr uint32_t kAesBit = static_cast<uint32_t>(Aead::kAes256Gcm);

bool HaveAes() { return (LocalAeads() & kAesBit) != 0; }

TEST(AeadNegotiationTest, AesOnlyWhenBothHaveItChaChaOtherwise) {
  EXPECT_NE(LocalAeads() & kChaChaBit, 0u);
  EXPECT_EQ((LocalAeads() & kAesBit) != 0, crypto_aead_aes256gcm_is_available() == 1);
  EXPECT_EQ(ChooseAead(kChaChaBit | kAesBit, kChaChaBit | kAesBit), Aead::kAes256Gcm);
  EXPECT_EQ(ChooseAead(kAesBit, kChaChaBit | kAesBit), Aead::kAes256Gcm);
  // The client lacks it, or the server does, or an old client offers nothing.
  EXPECT_EQ(ChooseAead(kChaChaBit, kChaChaBit | kAesBit), Aead::kChaCha20Poly1305);
  EXPECT_EQ(ChooseAead(kChaChaBit | kAesBit, kChaChaBit), Aead::kChaCha20Poly1305);
  EXPECT_EQ(ChooseAead(0, kChaChaBit | kAesBit), Aead::kChaCha20Poly1305);
  // Bits this version does not know are ignored.
  EXPECT_EQ(ChooseAead(0xFFFFFFF0u | kChaChaBit, kChaChaBit | kAesBit), Aead::kChaCha20Poly1305);
  EXPECT_STREQ(AeadName(Aead::kAes256Gcm), "aes-256-gcm");
  EXPECT_STREQ(AeadName(Aead::kChaCha20Poly1305), "chacha20-poly1305");
}

// The offer and the choice are bound into the keys: a downgraded offer or
// choice gives the two ends different keys (and a failing PSK or identity
// confirmation); no offer leaves the transcript as old peers make it.
TEST(AeadNegotiationTest, TheNegotiationIsBoundIntoTheTranscriptAndKeys) {
  EXPECT_EQ(AeadTranscript(0, kChaChaBit), "");
  EXPECT_EQ(AeadTranscript(0, 0), "");
  const std::string both = AeadTranscript(kChaChaBit | kAesBit, kAesBit);
  EXPECT_EQ(both.size(), std::string("udpmsg aead v1").size() + 8);
  EXPECT_NE(both, AeadTranscript(kChaChaBit | kAesBit, kChaChaBit));  // choice downgraded
  EXPECT_NE(both, AeadTranscript(kChaChaBit, kAesBit));               // offer edited
  EXPECT_NE(AeadTranscript(kChaChaBit, kChaChaBit), "");

  const KeyPair client = KeyPair::FromSeed(SeedOf(1));
  const KeyPair server = KeyPair::FromSeed(SeedOf(2));
  auto keys = [&](Role role, absl::string_view negotiation) {
    const std::string transcript = HandshakeTranscript(
        client.public_key(), server.public_key(), kClientCid, kServerCid, negotiation);
    const KeyPair& mine = role == Role::kClient ? client : server;
    const KeyPair& peer = role == Role::kClient ? server : client;
    absl::StatusOr<SessionKeys> k =
        DeriveSessionKeys(role, mine, peer.public_key(), transcript, PskOf(9));
    EXPECT_TRUE(k.ok());
    return std::make_pair(*k, transcript);
  };
  const auto [client_keys, client_transcript] = keys(Role::kClient, both);
  const auto [honest, honest_transcript] = keys(Role::kServer, both);
  EXPECT_EQ(client_keys.tx, honest.rx);
  for (const std::string& tampered :
       {AeadTranscript(kChaChaBit | kAesBit, kChaChaBit), AeadTranscript(kChaChaBit, kChaChaBit),
        std::string()}) {
    const auto [server_keys, server_transcript] = keys(Role::kServer, tampered);
    EXPECT_NE(client_keys.tx, server_keys.rx);
    EXPECT_NE(client_keys.rx, server_keys.tx);
    EXPECT_FALSE(VerifyPskConfirmation(PskOf(9), client_transcript, Role::kServer,
                                       PskConfirmation(PskOf(9), server_transcript,
                                                       Role::kServer)));
    EXPECT_FALSE(VerifyServerKeyConfirmation(
        client_keys, Role::kClient, client_transcript,
        ServerKeyConfirmation(server_keys, Role::kServer, server_transcript)));
  }
}

// The features both ends announce are bound as a labelled pair; an end
// that announces none (an older version) leaves the transcript unchanged.
TEST(FeaturesTranscriptTest, BindsBothEndsFeaturesOnlyWhenBothAnnounceSome) {
  EXPECT_EQ(FeaturesTranscript(0, 0), "");
  EXPECT_EQ(FeaturesTranscript(1, 0), "");
  EXPECT_EQ(FeaturesTranscript(0, 1), "");
  const std::string runs = FeaturesTranscript(1, 1);
  EXPECT_EQ(runs, std::string("udpmsg features v1") + std::string("\0\0\0\1\0\0\0\1", 8));
  EXPECT_NE(runs, FeaturesTranscript(3, 1));  // a bit added to the hello's
  EXPECT_NE(runs, FeaturesTranscript(1, 3));  // or to the accept's
  EXPECT_EQ(FeaturesTranscript(0x01020304u, 0x0A0B0C0Du).substr(18),
            std::string("\x01\x02\x03\x04\x0A\x0B\x0C\x0D", 8));
  // Not to be confused with the AEAD negotiation's bytes.
  EXPECT_NE(runs.substr(0, 14), AeadTranscript(1, 1).substr(0, 14));
}

// The sealed bytes are exactly libsodium's AEAD with the documented key
// schedule (the wire format old peers speak for ChaCha20-Poly1305), sealed
// in place or not.
TEST(AeadNegotiationTest, SealedBytesFollowTheDocumentedConstruction) {
  const Sides sides = Derive(PskOf(5), PskOf(5));
  const std::string plain(1150, 'q');
  for (const Aead aead : {Aead::kChaCha20Poly1305, Aead::kAes256Gcm}) {
    if (aead == Aead::kAes256Gcm && !HaveAes()) continue;
    SCOPED_TRACE(AeadName(aead));
    uint8_t key[32];
    crypto_kdf_derive_from_key(key, sizeof(key), aead == Aead::kAes256Gcm ? 3 : 1, "udpmsgpp",
                               sides.client.tx.data());
    uint8_t iv[16];
    crypto_kdf_derive_from_key(iv, sizeof(iv), 2, "udpmsgpp", sides.client.tx.data());
    const uint64_t pn = 0x0102030405060708;
    uint8_t nonce[12];
    std::copy(iv, iv + 12, nonce);
    for (int i = 0; i < 8; ++i) nonce[4 + i] ^= static_cast<uint8_t>(pn >> (56 - 8 * i));
    const std::string header = Header(pn);
    std::string expected(plain.size() + 16, '\0');
    unsigned long long len = 0;  // NOLINT(runtime/int)
    const auto* m = reinterpret_cast<const uint8_t*>(plain.data());
    const auto* ad = reinterpret_cast<const uint8_t*>(header.data());
    auto* c = reinterpret_cast<uint8_t*>(expected.data());
    if (aead == Aead::kAes256Gcm) {
      crypto_aead_aes256gcm_encrypt(c, &len, m, plain.size(), ad, header.size(), nullptr, nonce,
                                    key);
    } else {
      crypto_aead_chacha20poly1305_ietf_encrypt(c, &len, m, plain.size(), ad, header.size(),
                                                nullptr, nonce, key);
    }
    PacketProtector sealer(sides.client, aead);
    EXPECT_EQ(sealer.aead(), aead);
    EXPECT_EQ(sealer.Seal(pn, header, plain).value_or(""), expected);
    PacketProtector in_place(sides.client, aead);
    std::string datagram = header + plain;
    ASSERT_TRUE(in_place.SealInPlace(pn, header.size(), &datagram).ok());
    EXPECT_EQ(datagram, header + expected);
    // A reused number is refused and leaves the datagram as it was.
    const std::string before = datagram;
    EXPECT_EQ(in_place.SealInPlace(pn, header.size(), &datagram).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(datagram, before);
    // Sealed at the end of a batch: the datagrams before it are untouched.
    PacketProtector at_end(sides.client, aead);
    std::string batch = "earlier" + header + plain;
    ASSERT_TRUE(at_end.SealInPlace(pn, header.size(), &batch, 7).ok());
    EXPECT_EQ(batch, "earlier" + header + expected);
  }
}

TEST(AeadNegotiationTest, EachCipherOpensOnlyWithItsKeyAndItself) {
  const Sides sides = Derive(PskOf(5), PskOf(5));
  const Sides other = Derive(PskOf(6), PskOf(6));  // another room key: other keys
  std::vector<Aead> aeads = {Aead::kChaCha20Poly1305};
  if (HaveAes()) aeads.push_back(Aead::kAes256Gcm);
  for (const Aead aead : aeads) {
    SCOPED_TRACE(AeadName(aead));
    PacketProtector client(sides.client, aead);
    PacketProtector server(sides.server, aead);
    PacketProtector stranger(other.server, aead);
    std::string buffer = "reused";
    for (uint64_t pn = 1; pn <= 3; ++pn) {
      const std::string plain(100 * pn, static_cast<char>('a' + pn));
      const std::string sealed = client.Seal(pn, Header(pn), plain).value_or("");
      ASSERT_EQ(sealed.size(), plain.size() + kAeadTagBytes);
      // The wrong key.
      absl::Status wrong = stranger.OpenInto(pn, Header(pn), sealed, &buffer);
      EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(wrong.message()), HasSubstr("authentication failed"));
      // The other cipher with the right session keys.
      for (const Aead cipher : aeads) {
        if (cipher == aead) continue;
        PacketProtector mismatched(sides.server, cipher);
        EXPECT_FALSE(mismatched.Open(pn, Header(pn), sealed).ok());
      }
      // A flipped tag bit, then the genuine packet, into the reused buffer.
      std::string bad = sealed;
      bad.back() ^= 1;
      EXPECT_FALSE(server.OpenInto(pn, Header(pn), bad, &buffer).ok());
      ASSERT_TRUE(server.OpenInto(pn, Header(pn), sealed, &buffer).ok());
      EXPECT_EQ(buffer, plain);
      EXPECT_EQ(server.OpenInto(pn, Header(pn), sealed, &buffer).message(),
                absl::StrCat("replayed packet ", pn));
    }
  }
}

}  // namespace
}  // namespace udpmsg::reliable
