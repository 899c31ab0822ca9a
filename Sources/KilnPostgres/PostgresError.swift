/// What can go wrong talking to PostgreSQL. Server errors carry the SQLSTATE and the
/// server's own message, so callers branch on the code (`23505` unique violation,
/// `40001` serialization failure, …) and never on the text.
public enum PostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The URL is not a `postgresql://` URL libpq accepts.
    case invalidURL(String)
    /// Could not connect, or the connection broke (server restart, network). Whether a
    /// statement that was in flight took effect is unknown.
    case connection(String)
    /// The server refused a statement.
    case server(ServerError)
    /// A result column does not hold what the caller asked for.
    case decoding(String)
    /// A name or value Kiln refuses before sending anything (a channel name, a chunk size).
    case invalidArgument(String)
    /// A row the caller named does not exist (a blob id, a job id).
    case missing(String)
    /// The database's schema is newer than this build knows, or a migration failed.
    case schema(String)
    /// No connection became free within the pool's checkout timeout.
    case poolTimeout(seconds: Double)
    /// The pool or listener was shut down.
    case closed

    public struct ServerError: Sendable, Equatable {
        /// The five-character SQLSTATE, e.g. "23505".
        public var sqlState: String
        public var message: String
        public var detail: String?
        /// The constraint a constraint violation names, if any.
        public var constraint: String?
        /// The severity word (ERROR, FATAL, PANIC).
        public var severity: String
    }

    public var description: String {
        switch self {
        case let .invalidURL(why): return "invalid database URL: \(why)"
        case let .connection(why): return "database connection: \(why)"
        case let .server(e):
            var text = "database error \(e.sqlState): \(e.message)"
            if let detail = e.detail { text += " (\(detail))" }
            return text
        case let .decoding(why): return "database result: \(why)"
        case let .invalidArgument(why): return why
        case let .missing(what): return "\(what) not found in the database"
        case let .schema(why): return "database schema: \(why)"
        case let .poolTimeout(seconds): return "no database connection free within \(seconds) s"
        case .closed: return "database connection pool is closed"
        }
    }

    /// The SQLSTATE of a server error, nil for the other cases.
    public var sqlState: String? {
        if case let .server(e) = self { return e.sqlState }
        return nil
    }

    /// True when the connection itself failed: the caller may retry on a new connection
    /// once it knows whether the statement was applied.
    public var isConnectionFailure: Bool {
        switch self {
        case .connection: return true
        // Class 08 is connection exception; 57P01-57P03 are shutdown and "cannot
        // connect now", which a restarting server answers.
        case let .server(e): return e.sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(e.sqlState)
        default: return false
        }
    }

    public var isUniqueViolation: Bool { sqlState == "23505" }
}
