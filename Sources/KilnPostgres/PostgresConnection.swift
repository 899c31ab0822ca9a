import CLibPQ
import Foundation

/// One libpq connection. Statements are parameterised only (`$1`, `$2`, …), through
/// `PQprepare`/`PQexecPrepared` (cached per connection) or `PQexecParams`; there is no
/// call that runs a string of SQL with values pasted in.
///
/// A connection is used by one thread at a time (the pool hands it out that way); it
/// is `@unchecked Sendable` so it can move between threads.
public final class PostgresConnection: @unchecked Sendable {
    /// The URL with any password removed, for messages.
    public let displayURL: String
    private var handle: OpaquePointer?
    /// Prepared statements on this connection: key (SQL and parameter types) → name.
    private var statements: [String: String] = [:]
    private var nextStatement = 0
    private static let statementCacheLimit = 256
    /// When the connection last finished a statement, for the pool's idle check.
    public private(set) var lastUsed = Date()

    /// Connects to `url` (`postgresql://user[:password]@host:port/db[?options]`).
    /// - Parameter connectTimeout: seconds libpq waits for the server (its own minimum is 2).
    /// - Throws: `PostgresError.invalidURL`, or `.connection` with libpq's reason.
    public init(url: String, connectTimeout: Int = 5) throws {
        displayURL = try PostgresConnection.checkedDisplayURL(url)
        // Options first, the URL last: libpq lets later entries win, so a URL that sets
        // one of these (connect_timeout=…) overrides the default. TCP keepalives notice a
        // database that vanished from the network within about half a minute.
        let options: [(String, String)] = [
            ("connect_timeout", String(max(2, connectTimeout))),
            ("application_name", "kiln"),
            ("client_encoding", "UTF8"),
            ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
            ("dbname", url),
        ]
        handle = PostgresConnection.connect(options)
        guard let handle, PQstatus(handle) == CONNECTION_OK else {
            let why = handle.map { PostgresConnection.errorText($0) } ?? "out of memory"
            if let handle { PQfinish(handle) }
            self.handle = nil
            throw PostgresError.connection("\(displayURL): \(why)")
        }
        PostgresConnection.silenceNotices(handle)
    }

    deinit { close() }

    /// Closes the connection; later statements throw `.connection`.
    public func close() {
        if let handle { PQfinish(handle) }
        handle = nil
        statements.removeAll()
    }

    /// True while libpq considers the connection usable. A server that went away is only
    /// noticed when the socket is next read; see `checkAlive()`.
    public var isConnected: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// The server process serving this connection (for `pg_terminate_backend` in tests).
    public var backendPID: Int { handle.map { Int(PQbackendPID($0)) } ?? 0 }

    /// True when no transaction is open on the connection.
    public var isIdle: Bool { handle.map { PQtransactionStatus($0) == PQTRANS_IDLE } ?? false }

    /// Re-establishes the connection with the same settings (`PQreset`). Prepared statements
    /// and LISTENs of the old connection are gone.
    /// - Throws: `.connection` when the server cannot be reached.
    public func reconnect() throws {
        statements.removeAll()
        guard let handle else { throw PostgresError.closed }
        PQreset(handle)
        guard PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError.connection("\(displayURL): \(PostgresConnection.errorText(handle))")
        }
        PostgresConnection.silenceNotices(handle)
    }

    /// Checks that the server has not closed the connection, without a round trip in the
    /// common case: an idle connection's socket is readable only when the server sent
    /// something unasked, which is nearly always a FATAL error before it closes
    /// (shutdown, `pg_terminate_backend`). Only then is the connection pinged. Returns
    /// false when it is dead.
    public func checkAlive() -> Bool {
        guard let handle, PQstatus(handle) == CONNECTION_OK else { return false }
        var pfd = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, 0)
        if ready == 0 || (ready < 0 && errno == EINTR) { return true }
        return (try? execute("SELECT 1")) != nil && PQstatus(handle) == CONNECTION_OK
    }

    // MARK: - Statements

    /// Runs one parameterised statement as a prepared statement, preparing it on first
    /// use on this connection.
    /// - Throws: `.server` with the SQLSTATE when the server refuses it, `.connection`
    ///   when the connection broke.
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgresValue] = []) throws -> PostgresResult {
        let handle = try open()
        let encoded = parameters.map(\.encoded)
        let key = encoded.map { String($0.type) }.joined(separator: ",") + "\u{1}" + sql
        let name: String
        if let known = statements[key] {
            name = known
        } else if statements.count < PostgresConnection.statementCacheLimit {
            nextStatement += 1
            name = "kiln_\(nextStatement)"
            let types = encoded.map { Oid($0.type) }
            let prepared = types.withUnsafeBufferPointer { PQprepare(handle, name, sql, Int32(types.count), $0.baseAddress) }
            _ = try check(prepared)
            statements[key] = name
        } else {
            return try execute(sql, parameters)
        }
        do {
            return try check(withParameters(encoded) { values, lengths, formats in
                PQexecPrepared(handle, name, Int32(encoded.count), values, lengths, formats, 1)
            })
        } catch let error as PostgresError where error.sqlState == "0A000" && isIdle {
            // "cached plan must not change result type": a newer node added a column to a
            // table this statement reads with `*`. Nothing ran; outside a transaction,
            // prepare it afresh next time and run it unprepared now.
            statements[key] = nil
            _ = try? execute("DEALLOCATE \(name)")
            return try execute(sql, parameters)
        }
    }

    /// Runs one parameterised statement without preparing it (`PQexecParams`): for
    /// statements run once, such as schema changes.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws -> PostgresResult {
        let handle = try open()
        let encoded = parameters.map(\.encoded)
        let types = encoded.map { Oid($0.type) }
        return try check(withParameters(encoded) { values, lengths, formats in
            types.withUnsafeBufferPointer { PQexecParams(handle, sql, Int32(encoded.count), $0.baseAddress, values, lengths, formats, 1) }
        })
    }

    /// Runs `body` in a transaction on this connection: BEGIN, then COMMIT when it
    /// returns, ROLLBACK when it throws (the error is rethrown).
    @discardableResult
    public func transaction<T>(isolation: PostgresIsolation = .readCommitted, _ body: (PostgresConnection) throws -> T) throws -> T {
        try execute("BEGIN ISOLATION LEVEL \(isolation.sql)")
        let value: T
        do {
            value = try body(self)
        } catch {
            if isConnected { _ = try? execute("ROLLBACK") }
            throw error
        }
        try execute("COMMIT")
        return value
    }

    // MARK: - Notifications (used by PostgresListener)

    var socket: Int32 { handle.map { PQsocket($0) } ?? -1 }

    /// Reads what the server sent without blocking.
    func consumeInput() throws {
        let handle = try open()
        guard PQconsumeInput(handle) != 0, PQstatus(handle) == CONNECTION_OK else {
            throw PostgresError.connection(PostgresConnection.errorText(handle))
        }
    }

    /// The next notification already read, if any.
    func nextNotification() -> (channel: String, payload: String)? {
        guard let handle, let n = PQnotifies(handle) else { return nil }
        defer { PQfreemem(n) }
        return (String(cString: n.pointee.relname), n.pointee.extra.map { String(cString: $0) } ?? "")
    }

    // MARK: - Internals

    private func open() throws -> OpaquePointer {
        guard let handle else { throw PostgresError.connection("\(displayURL): connection closed") }
        return handle
    }

    /// Turns a libpq result into a `PostgresResult` or the matching error.
    private func check(_ result: OpaquePointer?) throws -> PostgresResult {
        lastUsed = Date()
        let handle = try open()
        guard let result else {
            throw PostgresError.connection(PostgresConnection.errorText(handle))
        }
        let status = PQresultStatus(result)
        if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY {
            return PostgresResult(handle: result)
        }
        defer { PQclear(result) }
        func field(_ code: Character) -> String? {
            guard let p = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: p)
        }
        let message = field("M") ?? PostgresConnection.errorText(handle)
        if PQstatus(handle) != CONNECTION_OK {
            throw PostgresError.connection(message)
        }
        guard let sqlState = field("C") else { throw PostgresError.connection(message) }
        throw PostgresError.server(.init(sqlState: sqlState, message: message, detail: field("D"), constraint: field("n"),
                                         severity: field("V") ?? field("S") ?? "ERROR"))
    }

    /// Calls `body` with libpq's parallel arrays of parameter values, lengths and formats.
    private func withParameters<R>(_ encoded: [EncodedParameter],
                                   _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) throws -> R) throws -> R {
        let lengths = encoded.map { Int32($0.bytes?.count ?? 0) }
        let formats = encoded.map { Int32($0.binary ? 1 : 0) }
        var pointers = [UnsafePointer<CChar>?](repeating: nil, count: encoded.count)
        // Copies the values into one buffer so every pointer stays valid during the call;
        // a NULL parameter keeps a nil pointer. libpq reads text parameters up to a NUL
        // (their length is ignored), so each value is followed by one, and text that
        // holds a NUL, which PostgreSQL's text cannot store, is refused.
        for (i, e) in encoded.enumerated() where !e.binary && e.bytes?.contains(0) == true {
            throw PostgresError.invalidArgument("parameter $\(i + 1) contains a NUL character, which PostgreSQL text cannot hold")
        }
        let total = encoded.reduce(0) { $0 + ($1.bytes?.count ?? 0) + 1 }
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
        defer { storage.deallocate() }
        var offset = 0
        for (i, e) in encoded.enumerated() {
            guard let bytes = e.bytes else { continue }
            bytes.withUnsafeBytes { src in
                if !src.isEmpty { UnsafeMutableRawBufferPointer(rebasing: storage[offset..<offset + src.count]).copyMemory(from: src) }
            }
            storage[offset + bytes.count] = 0
            pointers[i] = UnsafePointer(storage.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self))
            offset += bytes.count + 1
        }
        return try pointers.withUnsafeBufferPointer { p in
            try lengths.withUnsafeBufferPointer { l in
                try formats.withUnsafeBufferPointer { f in try body(p.baseAddress, l.baseAddress, f.baseAddress) }
            }
        }
    }

    private static func connect(_ options: [(String, String)]) -> OpaquePointer? {
        let keys = options.map { strdup($0.0) }, values = options.map { strdup($0.1) }
        defer { keys.forEach { free($0) }; values.forEach { free($0) } }
        var keyPointers = keys.map { UnsafePointer<CChar>($0) } + [nil]
        var valuePointers = values.map { UnsafePointer<CChar>($0) } + [nil]
        return keyPointers.withUnsafeMutableBufferPointer { k in
            valuePointers.withUnsafeMutableBufferPointer { v in PQconnectdbParams(k.baseAddress, v.baseAddress, 1) }
        }
    }

    /// libpq prints server notices ("relation already exists, skipping") to stderr by
    /// default; Kiln has nothing to do with them.
    private static func silenceNotices(_ handle: OpaquePointer) {
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
    }

    static func errorText(_ handle: OpaquePointer) -> String {
        String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Checks the scheme and returns the URL without its password.
    static func checkedDisplayURL(_ url: String) throws -> String {
        guard let schemeEnd = url.range(of: "://") else {
            throw PostgresError.invalidURL("expected postgresql://user@host:port/database")
        }
        let scheme = url[..<schemeEnd.lowerBound]
        guard scheme == "postgresql" || scheme == "postgres" else {
            throw PostgresError.invalidURL("scheme '\(scheme)' is not postgresql")
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        let userInfo = authority[..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }
}

/// Transaction isolation levels.
public enum PostgresIsolation: Sendable {
    case readCommitted, repeatableRead, serializable

    var sql: String {
        switch self {
        case .readCommitted: return "READ COMMITTED"
        case .repeatableRead: return "REPEATABLE READ"
        case .serializable: return "SERIALIZABLE"
        }
    }
}
