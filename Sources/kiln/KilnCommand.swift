import ArgumentParser
import Foundation
import KilnJSON
import KilnService

/// `kiln serve | validate | train | predict | jobs`, with `--help` (and `kiln help
/// COMMAND`) and `--version` on stdout. A usage error goes to stderr with exit 64.
@main
struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Train and serve custom neural networks described as JSON graphs.",
        version: "kiln \(Kiln.version)",
        subcommands: [Serve.self, Validate.self, Train.self, Predict.self, Jobs.self, Export.self]
    )
}

/// Where settings come from: the config file, then `KILN_*` variables, then options.
struct ConfigOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The configuration file (default config/kiln.json when present).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("The data directory: jobs, models, datasets.", valueName: "dir"))
    var dataDirectory: String?

    func load(host: String? = nil, port: Int? = nil) throws -> Config {
        var config = Config()
        do {
            try config.apply(file: self.config ?? "config/kiln.json", required: self.config != nil)
            try config.apply(environment: ProcessInfo.processInfo.environment)
            if let host { config.host = host }
            if let port { config.port = port }
            if let dataDirectory { config.dataDirectory = dataDirectory }
            try config.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        return config
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP service.",
        discussion: """
            Serves Kiln's API, TensorFlow Serving REST under /v1, the Open Inference Protocol \
            under /v2 and Prometheus /metrics, and runs the jobs it is sent. Settings come \
            from the config file, then KILN_* environment variables, then these options.
            """
    )
    @OptionGroup var settings: ConfigOptions
    @Option(help: ArgumentHelp("The address to listen on.", valueName: "host")) var host: String?
    @Option(help: ArgumentHelp("The port to listen on (0: any free one).", valueName: "port")) var port: Int?

    func run() throws {
        let service: Service
        do {
            service = try Service(config: try settings.load(host: host, port: port))
            try service.start()
        } catch let e as ValidationError {
            throw e
        } catch {
            FileHandle.standardError.write(Data("kiln: \(error)\n".utf8))
            throw ExitCode(2)
        }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let stopper = { (name: String) in
            Log.info("stopping", [("signal", .string(name))])
            service.stop()
            Foundation.exit(0)
        }
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .main)
        term.setEventHandler { stopper("SIGTERM") }
        term.resume()
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .main)
        interrupt.setEventHandler { stopper("SIGINT") }
        interrupt.resume()
        dispatchMain()
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a job spec and print its summary.",
        discussion: "As POST /validate does; exit 1 with the error (its JSON path included) when the spec is invalid."
    )
    @Argument(help: ArgumentHelp("The job spec.", valueName: "spec.json")) var spec: String
    @OptionGroup var settings: ConfigOptions

    func run() throws {
        let code = CommandLineTools.run("validate", specPath: spec, config: try settings.load())
        if code != 0 { throw ExitCode(code) }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trained model as ONNX.",
        discussion: "PATH is a data directory (the model is found by name or job id) or one job's directory; only reads files, so it is safe beside a running server (docs/onnx.md)."
    )
    @Argument(help: ArgumentHelp("A data directory or a job's directory.", valueName: "path")) var path: String
    @Option(help: ArgumentHelp("The model's name or job id (with a data directory).", valueName: "name")) var model: String?
    @Option(help: ArgumentHelp("Where to write the file.", valueName: "file")) var output: String
    @Option(help: ArgumentHelp("The format: onnx.", valueName: "format")) var format: String = "onnx"

    func run() throws {
        let code = ModelExport.command(path: path, model: model, output: output, format: format)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a spec in this process and print each epoch's metrics as JSON.",
        discussion: """
            A terminal shows a progress bar with the ETA and the running loss. --data-dir also \
            stores the trained model there as a succeeded job under the spec's name, so \
            `kiln serve --data-dir DIR` serves it (with no server running on DIR meanwhile); \
            datasets are cached there too.
            """
    )
    @Argument(help: ArgumentHelp("The job spec.", valueName: "spec.json")) var spec: String
    @Option(help: ArgumentHelp("Keep the model artifact in this directory (model.json, checkpoint.safetensors, spec.json), written after each epoch, for `kiln predict --model DIR`.", valueName: "dir"))
    var output: String?
    @OptionGroup var settings: ConfigOptions

    func run() throws {
        let code = CommandLineTools.run("train", specPath: spec, config: try settings.load(), output: output, register: settings.dataDirectory != nil)
        if code != 0 { throw ExitCode(code) }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a /predict body without \"model\": {\"inputs\": {name: array}} or {\"instances\": [row, ...]}.",
        discussion: """
            --model is an artifact directory written by `kiln train --output`, or the name (or \
            job id) of a model: on the server given by --server (or KILN_SERVER, token from \
            KILN_AUTH_TOKEN), else in the data directory (one no server is running on).
            """
    )
    @Argument(help: ArgumentHelp("The request body.", valueName: "input.json")) var input: String
    @Option(help: ArgumentHelp("An artifact directory, or a model name or job id.", valueName: "dir|name")) var model: String
    @Option(help: ArgumentHelp("A running server's URL.", valueName: "url")) var server: String?
    @OptionGroup var settings: ConfigOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard server != nil || (environment["KILN_SERVER"] != nil && settings.dataDirectory == nil) else {
            let code = CommandLineTools.predict(model: model, inputPath: input, config: try settings.load())
            if code != 0 { throw ExitCode(code) }
            return
        }
        guard let bytes = FileManager.default.contents(atPath: input), let body = try? JSON.parse([UInt8](bytes)), body.objectMembers != nil else {
            throw ValidationError("\(input) is not a JSON object")
        }
        let client = ServerClient(server: server, environment: environment)
        let code = client.show(try client.call("POST", "/predict", body: Data(body.setting("model", to: .string(model)).serialized().utf8)))
        if code != 0 { throw ExitCode(code) }
    }
}

/// The jobs of a running server.
struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The jobs of a running server (--server URL, else KILN_SERVER, else http://127.0.0.1:8080; token from KILN_AUTH_TOKEN).",
        subcommands: [List.self, Show.self, Cancel.self, Metrics.self],
        defaultSubcommand: List.self
    )

    struct ServerOption: ParsableArguments {
        @Option(help: ArgumentHelp("A running server's URL.", valueName: "url")) var server: String?
        var client: ServerClient { ServerClient(server: server, environment: ProcessInfo.processInfo.environment) }
    }

    static func finish(_ code: Int32) throws {
        if code != 0 { throw ExitCode(code) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per job: id, name, status, epoch.")
        @OptionGroup var options: ServerOption
        func run() throws { try Jobs.finish(try options.client.list()) }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A job's record as JSON.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var options: ServerOption
        func run() throws { try Jobs.finish(options.client.show(try options.client.call("GET", "/jobs/\(id)"))) }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var options: ServerOption
        func run() throws { try Jobs.finish(options.client.show(try options.client.call("DELETE", "/jobs/\(id)"))) }
    }

    struct Metrics: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A job's metrics; with --follow, each new epoch as a JSON line until the job ends (exit 0 when it succeeded).")
        @Argument(help: "The job id.") var id: String
        @Flag(help: "Print epochs as they finish, until the job ends.") var follow = false
        @OptionGroup var options: ServerOption
        func run() throws {
            let client = options.client
            try Jobs.finish(follow ? try client.follow(id) : client.show(try client.call("GET", "/jobs/\(id)/metrics")))
        }
    }
}
