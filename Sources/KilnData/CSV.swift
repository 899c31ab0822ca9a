// CSV uploads (RFC 4180): a header row naming the columns, then one row per example.

public enum CSV {
    /// Field holding every column but the label, in header order: [rows, columns].
    public static let featuresField = "features"
    /// Field holding the label column: [rows].
    public static let labelField = "label"

    /// Reads a CSV table whose cells are all numbers.
    ///
    /// The column named `label` (or `labelColumn`, when given) becomes the field
    /// `label` (int32 when every value is a whole number, else float32); every other
    /// column goes, in header order, into the float32 field `features` [rows, columns].
    /// Without a label column, all columns are features. Quoted cells (`"1,5"` is not a
    /// number, `"15"` is), CRLF or LF line ends, a UTF-8 byte-order mark and a last line
    /// without its line end are accepted; blank lines are skipped.
    /// - Throws: `DatasetError` naming the line and column (1-based, with the column's
    ///   name) of the first cell that is not a finite number, or the row whose cell count
    ///   differs from the header's.
    public static func parse(_ bytes: [UInt8], labelColumn: String? = nil) throws(DatasetError) -> [String: DataArray] {
        var rows = try records(bytes)
        guard !rows.isEmpty else { throw DatasetError(field: "csv", "the file is empty; the first line must name the columns") }
        let (headerLine, header) = rows.removeFirst()
        for (j, name) in header.enumerated() where name.trimmingSpaces.isEmpty {
            throw DatasetError(field: "csv", "line \(headerLine), column \(j + 1): the header names no column; the first line must name every column")
        }
        let names = header.map(\.trimmingSpaces)
        var labelIndex: Int?
        if let wanted = labelColumn {
            guard let i = names.firstIndex(of: wanted) else {
                throw DatasetError(field: "csv", "no column named '\(wanted)' for the label; the header has \(names.joined(separator: ", "))")
            }
            labelIndex = i
        } else {
            labelIndex = names.firstIndex(of: labelField)
        }
        guard !rows.isEmpty else { throw DatasetError(field: "csv", "the file has a header but no rows") }

        let featureCount = names.count - (labelIndex == nil ? 0 : 1)
        var features = [Float]()
        features.reserveCapacity(rows.count * featureCount)
        var labels = [Float]()
        labels.reserveCapacity(rows.count)
        var wholeLabels = true
        for (line, cells) in rows {
            guard cells.count == names.count else {
                throw DatasetError(field: "csv", "line \(line): \(cells.count) cells but the header names \(names.count) columns")
            }
            for (j, cell) in cells.enumerated() {
                let text = cell.trimmingSpaces
                guard let value = Double(text), value.isFinite, Swift.abs(value) <= Double(Float.greatestFiniteMagnitude) else {
                    let shown = text.isEmpty ? "an empty cell" : "'\(text.prefix(40))'"
                    throw DatasetError(field: "csv", "line \(line), column \(j + 1) ('\(names[j])'): \(shown) is not a number; every cell must be a finite number")
                }
                if j == labelIndex {
                    labels.append(Float(value))
                    if value.rounded() != value { wholeLabels = false }
                } else {
                    features.append(Float(value))
                }
            }
        }
        var fields: [String: DataArray] = [:]
        if featureCount > 0 {
            fields[featuresField] = DataArray(shape: [rows.count, featureCount], dtype: .float32, values: features)
        }
        if labelIndex != nil {
            fields[labelField] = DataArray(shape: [rows.count], dtype: wholeLabels ? .int32 : .float32, values: labels)
        }
        return fields
    }

    /// Splits the text into records of cells, with each record's 1-based line number.
    static func records(_ bytes: [UInt8]) throws(DatasetError) -> [(line: Int, cells: [String])] {
        var out: [(Int, [String])] = []
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        var cells: [String] = []
        var cell: [UInt8] = []
        var recordLine = 1
        var quoted = false, wasQuoted = false, any = false
        func endCell() {
            cells.append(String(decoding: cell, as: UTF8.self))
            cell.removeAll(keepingCapacity: true)
            wasQuoted = false
        }
        func endRecord() {
            endCell()
            // A blank line is no record.
            if !(cells.count == 1 && cells[0].isEmpty) { out.append((recordLine, cells)) }
            cells.removeAll()
        }
        while i < bytes.count {
            let b = bytes[i]
            any = true
            if quoted {
                if b == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\"") { cell.append(b); i += 2; continue }
                    quoted = false
                } else {
                    if b == UInt8(ascii: "\n") { line += 1 }
                    cell.append(b)
                }
                i += 1
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                guard cell.allSatisfy({ $0 == 0x20 }) && !wasQuoted else {
                    throw DatasetError(field: "csv", "line \(line), column \(cells.count + 1): a quote inside an unquoted cell")
                }
                cell.removeAll()
                quoted = true
                wasQuoted = true
            case UInt8(ascii: ","):
                endCell()
            case UInt8(ascii: "\r") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\n"):
                break
            case UInt8(ascii: "\n"):
                endRecord()
                line += 1
                recordLine = line
            default:
                cell.append(b)
            }
            i += 1
        }
        if quoted { throw DatasetError(field: "csv", "line \(recordLine): a quoted cell is not closed before the end of the file") }
        if any && !(cells.isEmpty && cell.isEmpty) { endRecord() }
        return out
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(scalars[first...last])
    }
}
