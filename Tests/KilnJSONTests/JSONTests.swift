import Foundation
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

    /// Numbers parse to exactly what strtod gives for the same text, on the fast path
    /// (small mantissa and exponent) and off it.
    func testNumbersMatchStrtod() throws {
        var texts = ["0", "-0", "0.0", "1", "-1", "0.1", "0.32941177", "1e22", "1e23", "9007199254740993",
                     "123456789012345678901234567890", "0.000000000000000000000001", "1.7976931348623157e308",
                     "4.9e-324", "1e-400", "2.2250738585072014e-308", "0e999", "-0.0e-5", "12.5E+3", "7e-22", "7e-23"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: texts.append("\(Float.random(in: -1...1, using: &generator))")
            case 1: texts.append("\(Double.random(in: -1e6...1e6, using: &generator))")
            case 2: texts.append("\(Int.random(in: -999_999_999...999_999_999, using: &generator))e\(Int.random(in: -30...30, using: &generator))")
            default:
                let digits = (0..<Int.random(in: 1...20, using: &generator)).map { _ in String(Int.random(in: 0...9, using: &generator)) }.joined()
                texts.append("0.\(digits)")
            }
        }
        for text in texts {
            let value = try JSON.parse(text).doubleValue!
            let expected = strtod(text, nil)
            XCTAssertEqual(value.bitPattern, expected.bitPattern, text)
        }
        for text in ["1e309", "-1e309", "1e99999999999", "1" + String(repeating: "0", count: 400)] {
            XCTAssertThrowsError(try JSON.parse(text), text)
        }
    }

    /// Packed parsing reads the same documents as `parse`, fails on the same ones with the
    /// same message, and packs exactly the rectangular arrays of numbers.
    func testPackedParsingMatchesParse() throws {
        let documents = [
            "[1, 2, 3]", "[[1, 2], [3, 4]]", "[[[0.5]], [[1e3]]]", "[]", "[[]]", "[[1], [2, 3]]", "[[1], 2]", "[1, [2]]",
            "[[[1]], [2]]", "[1, \"a\"]", "[true]", "{\"model\": \"m\", \"instances\": [[[0], [1]], [[2], [3]]]}",
            "{\"inputs\": {\"x\": [ [ 1 , 2 ] , [3,4] ] }, \"outputs\": [\"y\"]}", "[{\"a\": [1]}, [2, 3]]",
            "  [ -0 , 1.5e-3 ]  ", "[[1, 2], [3, 4], {}]", "[1, null]", "\u{FEFF}[1]",
        ]
        for text in documents {
            XCTAssertEqual(try JSON.parsePacked(Array(text.utf8)).json, try JSON.parse(text), text)
        }
        let bad = ["[1e309]", "[1,]", "[[1,2],[3,]]", "[[1],[2]", "[01]", "[1 2]", "[[1], [2]] x", "{\"a\": [1], \"a\": [2]}",
                   "[-]", "[1.]", "[[1], [1e400]]", String(repeating: "[", count: 300) + "1" + String(repeating: "]", count: 300),
                   String(repeating: "[", count: 100_000)]
        for text in bad {
            var packedError = "", error = ""
            do { _ = try JSON.parsePacked(Array(text.utf8)) } catch { packedError = "\(error)" }
            do { _ = try JSON.parse(text) } catch let e { error = "\(e)" }
            XCTAssertFalse(error.isEmpty, text)
            XCTAssertEqual(packedError, error, text)
        }
        let ok = String(repeating: "[", count: 256) + "1" + String(repeating: "]", count: 256)
        guard case let .numbers(deepShape, _) = try JSON.parsePacked(Array(ok.utf8)) else { return XCTFail("not packed") }
        XCTAssertEqual(deepShape, [Int](repeating: 1, count: 256))

        guard case let .numbers(shape, values) = try JSON.parsePacked(Array("[[[1], [2]], [[3], [4]], [[5], [6]]]".utf8)) else {
            return XCTFail("not packed")
        }
        XCTAssertEqual(shape, [3, 2, 1])
        XCTAssertEqual(values, [1, 2, 3, 4, 5, 6])
        // After a ragged row, rows that start past the point where packing stopped are packed again.
        guard case let .array(items) = try JSON.parsePacked(Array("[[1, 2], [3], [4, 5]]".utf8)), items.count == 3,
              case .array = items[0], case let .numbers(last, _) = items[2] else {
            return XCTFail("expected an unpacked array holding a packed last row")
        }
        XCTAssertEqual(last, [2])
    }
}
