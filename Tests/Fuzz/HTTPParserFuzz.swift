// libFuzzer entry point for HTTPRequestParser. Not part of the SwiftPM package; build
// and run it with scripts/http-fuzz.sh, which does:
//
//   swiftc -sanitize=fuzzer,address -parse-as-library -module-name KilnJSON -emit-module ... Sources/KilnJSON/*.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -module-name KilnHTTP -emit-module -I ... Sources/KilnHTTP/*.swift
//   swiftc -sanitize=fuzzer,address -parse-as-library -I ... Tests/Fuzz/HTTPParserFuzz.swift <objects> -o http-parser-fuzz
//   ./http-parser-fuzz -max_len=65536 -max_total_time=60 Tests/Fuzz/corpus
//
// Properties checked on every input: the parser never crashes or traps, feeding the
// input whole and split at an input-derived point gives the same events, every request
// respects the limits, and nothing follows a failure.
import KilnHTTP

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let limits = HTTPRequestParser.Limits(maxBodyBytes: 4096)

    var whole = HTTPRequestParser(limits: limits)
    let expected = summarize(whole.feed(bytes))

    let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var split = HTTPRequestParser(limits: limits)
    let actual = summarize(split.feed(Array(bytes[..<cut])) + split.feed(Array(bytes[cut...])))
    precondition(expected == actual, "split at \(cut) changed the outcome")

    for (index, event) in expected.enumerated() where event.hasPrefix("failure") {
        precondition(index == expected.count - 1, "events after a failure")
    }
    return 0
}

private func summarize(_ events: [HTTPParserEvent]) -> [String] {
    events.map { event in
        switch event {
        case .continueExpected:
            return "continue"
        case let .failure(error):
            return "failure \(error)"
        case let .request(request):
            precondition(request.body.count <= 4096, "body over the limit")
            precondition(request.target.utf8.count <= 8192, "target over the limit")
            precondition(request.headers.count <= 100, "too many headers")
            return "request \(request.method) \(request.target) \(request.versionMinor) "
                + request.headers.map { "\($0.name)=\($0.value)" }.joined(separator: "|") + " \(request.body)"
        }
    }
}
