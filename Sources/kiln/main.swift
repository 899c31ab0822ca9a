import Foundation
import KilnJSON
import KilnService

/// `kiln serve | validate | train | predict | jobs | help`; `kiln --help`, `kiln --version`.
/// Help asked for goes to stdout with exit 0; a usage error goes to stderr with exit 2.
let arguments = Array(CommandLine.arguments.dropFirst())

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("kiln: \(message)\n".utf8))
    exit(2)
}

let usage = """
    usage: kiln <command> [options]

    commands:
      serve                 run the HTTP service
      validate SPEC.json    check a job spec and print its summary
      train SPEC.json       train a spec here, with a progress bar; --output DIR keeps the model
      predict INPUT.json    run a model on a request body ({"inputs": …} or {"instances": […]})
      jobs [list|show|cancel|metrics]   the jobs of a running server
      help [COMMAND]        this text, or a command's

    options:
      -h, --help            help (also after a command: kiln serve --help)
      --version             the version
    """

let commandHelp: [String: String] = [
    "serve": """
        usage: kiln serve [--config FILE] [--host HOST] [--port PORT] [--data-dir DIR]

        Serves the HTTP API (Kiln's own, TensorFlow Serving REST under /v1, the Open
        Inference Protocol under /v2, Prometheus /metrics) and runs the jobs it is sent.
        Settings come from FILE (default config/kiln.json), then KILN_* environment
        variables, then these options.
        """,
    "validate": """
        usage: kiln validate SPEC.json [--config FILE]

        Checks a job spec as POST /validate does and prints its summary; exit 1 with the
        error (its JSON path included) when the spec is invalid.
        """,
    "train": """
        usage: kiln train SPEC.json [--output DIR] [--data-dir DIR] [--config FILE]

        Trains the spec in this process, with a progress bar (ETA, loss per epoch) on a
        terminal, and prints the metrics of every epoch as JSON.
          --output DIR    keep the model artifact in DIR (model.json, checkpoint.safetensors,
                          spec.json), written after each epoch, for kiln predict --model DIR
          --data-dir DIR  also store the trained model there as a succeeded job under the
                          spec's name, so kiln serve --data-dir DIR serves it (with no server
                          running on DIR meanwhile); datasets are cached there too
        """,
    "predict": """
        usage: kiln predict --model DIR|NAME INPUT.json [--server URL | --data-dir DIR] [--config FILE]

        Runs a model on INPUT.json, a /predict body without "model": {"inputs": {name: array}}
        or {"instances": [row, …]}. --model is an artifact directory written by
        kiln train --output, or the name (or job id) of a model: on the server given by
        --server (or KILN_SERVER), else in the data directory (one no server is running on).
        """,
    "jobs": """
        usage: kiln jobs [list]                      [--server URL]
               kiln jobs show ID                     [--server URL]
               kiln jobs cancel ID                   [--server URL]
               kiln jobs metrics ID [--follow]       [--server URL]

        The jobs of a running server: --server URL, else KILN_SERVER, else
        http://127.0.0.1:8080; the token (for cancel) from KILN_AUTH_TOKEN. metrics
        --follow prints each new epoch as a JSON line until the job ends (exit 0 when it
        succeeded).
        """,
]

func printHelp(_ command: String?) -> Never {
    print(command.flatMap { commandHelp[$0] } ?? usage)
    exit(0)
}

guard let command = arguments.first else { fail(usage) }
switch command {
case "--help", "-h": printHelp(nil)
case "help": printHelp(arguments.count > 1 ? arguments[1] : nil)
case "--version", "version":
    print("kiln \(Kiln.version)")
    exit(0)
default: break
}
guard commandHelp[command] != nil else { fail("unknown command '\(command)'\n\(usage)") }
var options: [String: String] = [:]
var positional: [String] = []
var i = 1
while i < arguments.count {
    let a = arguments[i]
    if a == "--help" || a == "-h" { printHelp(command) }
    if a == "--follow" {
        options["follow"] = "1"
        i += 1
    } else if a.hasPrefix("--") {
        guard i + 1 < arguments.count else { fail("\(a) needs a value\n\(commandHelp[command]!)") }
        options[String(a.dropFirst(2))] = arguments[i + 1]
        i += 2
    } else {
        positional.append(a)
        i += 1
    }
}
let known: [String: Set<String>] = [
    "serve": ["config", "host", "port", "data-dir"], "validate": ["config"],
    "train": ["config", "output", "data-dir"], "predict": ["config", "model", "data-dir", "server"],
    "jobs": ["server", "follow"],
]
for key in options.keys where !known[command]!.contains(key) { fail("kiln \(command) has no option --\(key)\n\(commandHelp[command]!)") }

func loadConfig() -> Config {
    var config = Config()
    do {
        try config.apply(file: options["config"] ?? "config/kiln.json", required: options["config"] != nil)
        try config.apply(environment: ProcessInfo.processInfo.environment)
        if let h = options["host"] { config.host = h }
        if let p = options["port"] { guard let n = Int(p) else { fail("--port must be a number") }; config.port = n }
        if let d = options["data-dir"] { config.dataDirectory = d }
        try config.validate()
    } catch { fail("\(error)") }
    return config
}

switch command {
case "serve":
    let service: Service
    do {
        service = try Service(config: loadConfig())
        try service.start()
    } catch { fail("\(error)") }
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let stopper = { (name: String) in
        Log.info("stopping", [("signal", .string(name))])
        service.stop()
        exit(0)
    }
    let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .main)
    term.setEventHandler { stopper("SIGTERM") }
    term.resume()
    let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .main)
    interrupt.setEventHandler { stopper("SIGINT") }
    interrupt.resume()
    dispatchMain()
case "validate", "train":
    guard let path = positional.first else { fail(commandHelp[command]!) }
    let code = CommandLineTools.run(command, specPath: path, config: loadConfig(), output: options["output"],
                                    register: options["data-dir"] != nil)
    exit(code)
case "predict":
    guard let path = positional.first, let model = options["model"] else { fail(commandHelp[command]!) }
    let environment = ProcessInfo.processInfo.environment
    guard options["server"] != nil || (environment["KILN_SERVER"] != nil && options["data-dir"] == nil) else {
        exit(CommandLineTools.predict(model: model, inputPath: path, config: loadConfig()))
    }
    let client = ServerClient(server: options["server"], environment: environment)
    guard let bytes = FileManager.default.contents(atPath: path), let body = try? JSON.parse([UInt8](bytes)), body.objectMembers != nil else {
        fail("\(path) is not a JSON object")
    }
    do {
        exit(client.show(try client.call("POST", "/predict", body: Data(body.setting("model", to: .string(model)).serialized().utf8))))
    } catch { fail("\(error)") }
case "jobs":
    let client = ServerClient(server: options["server"], environment: ProcessInfo.processInfo.environment)
    let action = positional.first ?? "list"
    let id = positional.count > 1 ? positional[1] : nil
    do {
        switch (action, id) {
        case ("list", nil): exit(try client.list())
        case ("show", let id?): exit(client.show(try client.call("GET", "/jobs/\(id)")))
        case ("cancel", let id?): exit(client.show(try client.call("DELETE", "/jobs/\(id)")))
        case ("metrics", let id?):
            exit(options["follow"] != nil ? try client.follow(id) : client.show(try client.call("GET", "/jobs/\(id)/metrics")))
        default: fail(commandHelp["jobs"]!)
        }
    } catch { fail("\(error)") }
default:
    fail(usage)
}
