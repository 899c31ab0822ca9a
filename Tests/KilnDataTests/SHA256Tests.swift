import XCTest
@testable import KilnData

final class SHA256Tests: XCTestCase {
    func testStandardVectors() {
        // FIPS 180-4 / NIST CAVP examples.
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testPaddingBoundaries() {
        let expected = [
            55: "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            56: "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            63: "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            64: "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            119: "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
            1000: "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3",
        ]
        for (n, hex) in expected {
            XCTAssertEqual(SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: n)), hex, "length \(n)")
        }
        let bytes = Array((0..<768).map { UInt8($0 & 0xff) })
        XCTAssertEqual(SHA256.hex(bytes), "f3a25aa93aa2fbba28d79260535bbd6a5eb0fc1c24a8b0f04e12b484c1dfe363")
        XCTAssertEqual(bytes.withUnsafeBytes { SHA256.digest($0) }.count, 32)
    }
}

final class RedactTests: XCTestCase {
    func testUserinfoAndSecretQueryValuesAreRedacted() {
        XCTAssertEqual(Redact.url("https://u:p@mirror.example/mnist/a.gz"), "https://REDACTED@mirror.example/mnist/a.gz")
        XCTAssertEqual(Redact.url("http://h/x?api_key=1&n=2&Signature=3#f"), "http://h/x?api_key=REDACTED&n=2&Signature=REDACTED#f")
        XCTAssertEqual(Redact.url("http://h/x?a=1"), "http://h/x?a=1")
        XCTAssertEqual(Redact.text("download of http://a:b@h:1/p?token=t failed; retry 'https://c@d/e'"),
                       "download of http://REDACTED@h:1/p?token=REDACTED failed; retry 'https://REDACTED@d/e'")
        XCTAssertEqual(Redact.text("no url here"), "no url here")
    }
}
