import KilnJSON
public struct HTTPHeaders: Sequence {
    var pairs: [(String, String)]
    public init(_ pairs: [(String, String)] = []) { self.pairs = pairs }
    public subscript(name: String) -> String? { pairs.first { $0.0.lowercased() == name.lowercased() }?.1 }
    public func makeIterator() -> IndexingIterator<[(String, String)]> { pairs.makeIterator() }
}
public struct HTTPRequest {
    public var method: String; public var target: String; public var path: String; public var query: [String: String]
    public var versionMinor: Int; public var headers: HTTPHeaders; public var body: [UInt8]; public var pathParameters: [String: String]
}
public protocol HTTPStreamWriter: AnyObject { func write(_ bytes: [UInt8]) -> Bool }
public struct HTTPResponse {
    public enum Body { case bytes([UInt8]); case stream((HTTPStreamWriter) -> Void) }
    public var status: Int; public var headers: HTTPHeaders; public var body: Body
    public static func json(_ status: Int, _ value: JSON, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse { fatalError() }
}
public struct HTTPError: Error { public init(_ status: Int, code: String, message: String, path: String? = nil, headers: HTTPHeaders = HTTPHeaders()) {} }
public final class Router { public init() {}; public func add(_ method: String, _ pattern: String, _ handler: @escaping (HTTPRequest) throws -> HTTPResponse) {}; public func handle(_ request: HTTPRequest) -> HTTPResponse { fatalError() } }
public struct HTTPServerConfiguration { public var host = ""; public var port = 0; public var maxBodyBytes = 0; public init() {} }
public final class HTTPServer { public init(configuration: HTTPServerConfiguration, handler: @escaping (HTTPRequest) -> HTTPResponse) {}; public func start() throws {}; public var port: Int { 0 }; public func stop() {}; public var onRequestCompleted: ((HTTPRequest, Int, Double) -> Void)? }
