import KilnJSON
import XCTest

final class JSONTests: XCTestCase {
    func testParsesAndWritesValues() throws {
        let text = #"{"a": [1, 2.5, -3e2, true, false, null], "b": {"c": "x\"y\u00e9\ud83d\ude00"}}"#
        let v = try JSON.parse(text)
        XCTAssertEqual(v["a"]?[1]?.doubleValue, 2.5)
        XCTAssertEqual(v["a"]?[2]?.intValue, -300)
        XCTAssertEqual(v["b"]?["c"]?.stringValue, "x\"yé😀")
        XCTAssertEqual(try JSON.parse(v.serialized()), v)
        XCTAssertEqual(JSON(Float(0.1)).serialized(), "0.1")
        XCTAssertEqual(JSON.object([("k", .array([1, 2]))]).serialized(), #"{"k":[1,2]}"#)
    }

    func testRejectsWhatItMust() {
        let bad: [(String, String)] = [
            ("[1e309]", "out of range"), ("[1,]", "unexpected"), ("{\"a\":1,\"a\":2}", "duplicate key"),
            ("[01]", "expected ','"), ("\"\\x\"", "invalid escape"), ("[NaN]", "unexpected"), ("", "end of input"),
            ("{\"a\" 1}", "expected ':'"), ("\"\u{01}\"", "control character"), ("[1] x", "after the JSON value"),
        ]
        for (text, message) in bad {
            XCTAssertThrowsError(try JSON.parse(text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
    }

    func testDeepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try JSON.parse(deep)) { error in
            XCTAssertTrue("\(error)".contains("nesting"))
        }
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        XCTAssertNoThrow(try JSON.parse(ok))
    }

    func testErrorPositionIsLineAndColumn() {
        XCTAssertThrowsError(try JSON.parse("{\n  \"a\": tru\n}")) { error in
            let e = error as! JSONParseError
            XCTAssertEqual(e.line, 2)
            XCTAssertEqual(e.column, 8)
        }
    }

    func testSortedKeysGiveCanonicalText() {
        let a: JSON = ["b": 1, "a": ["d": 2, "c": 3]]
        let b: JSON = ["a": ["c": 3, "d": 2], "b": 1]
        XCTAssertEqual(a.serialized(sortedKeys: true), b.serialized(sortedKeys: true))
        XCTAssertEqual(a, b)
    }
}
