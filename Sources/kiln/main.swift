import Foundation
import KilnService

/// `kiln serve [--config FILE] [--port N] [--host H] [--data-dir DIR]`
/// `kiln validate spec.json`, `kiln train spec.json`
let arguments = Array(CommandLine.arguments.dropFirst())

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("kiln: \(message)\n".utf8))
    exit(2)
}

let usage = """
    usage: kiln serve [--config FILE] [--host HOST] [--port PORT] [--data-dir DIR]
           kiln validate SPEC.json
           kiln train SPEC.json [--data-dir DIR]
    """

guard let command = arguments.first else { fail(usage) }
var options: [String: String] = [:]
var positional: [String] = []
var i = 1
while i < arguments.count {
    let a = arguments[i]
    if a.hasPrefix("--") {
        guard i + 1 < arguments.count else { fail("\(a) needs a value\n\(usage)") }
        options[String(a.dropFirst(2))] = arguments[i + 1]
        i += 2
    } else {
        positional.append(a)
        i += 1
    }
}

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
    guard let path = positional.first else { fail(usage) }
    let code = CommandLineTools.run(command, specPath: path, config: loadConfig())
    exit(code)
case "export":  // kiln export DATA-DIR|JOB-DIR --model NAME --output FILE [--format onnx]
    exit(ModelExport.command(path: positional.first, model: options["model"], output: options["output"], format: options["format"]))
default:
    fail(usage)
}
