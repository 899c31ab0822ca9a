import Foundation
import KilnService

/// `kiln serve | validate | train | predict | help`; `kiln --help`, `kiln --version`.
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
        usage: kiln predict --model DIR|NAME INPUT.json [--data-dir DIR] [--config FILE]

        Runs a model on INPUT.json, a /predict body without "model": {"inputs": {name: array}}
        or {"instances": [row, …]}. --model is an artifact directory written by
        kiln train --output, or the name (or job id) of a model in the data directory
        (one no server is running on).
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
    if a.hasPrefix("--") {
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
    "train": ["config", "output", "data-dir"], "predict": ["config", "model", "data-dir"],
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
    exit(CommandLineTools.predict(model: model, inputPath: path, config: loadConfig()))
default:
    fail(usage)
}
