public final class LoopbackFileServer { public init(root: String) throws {}; public var port: Int { 0 }; public var baseURL: String { "" }; public var requestCount: Int { 0 }; public func stop() {} }
