# JSON reading and writing, and atomic file writes, for the Julia scripts globtim-hpc runs
# on the cluster (the driver, deploy_env.jl, verify_env.jl). Only Base and the standard
# library: a broken package environment must still be able to report itself.
#
# Included with include(joinpath(@__DIR__, "common_io.jl")); shipped beside those scripts.

# ---------------------------------------------------------------------------------------------
# JSON, reading
# ---------------------------------------------------------------------------------------------

mutable struct JsonReader
    s::String
    i::Int
end

const JSON_ESCAPES = Dict{UInt8,UInt8}(
    UInt8('"') => UInt8('"'),
    UInt8('\\') => UInt8('\\'),
    UInt8('/') => UInt8('/'),
    UInt8('b') => 0x08,
    UInt8('f') => 0x0c,
    UInt8('n') => 0x0a,
    UInt8('r') => 0x0d,
    UInt8('t') => 0x09,
)
const JSON_NUMBER_BYTES = Set{UInt8}(codeunits("0123456789+-.eE"))

json_fail(r::JsonReader, msg::AbstractString) =
    throw(ArgumentError("invalid JSON at byte $(r.i): $msg"))

function json_skip_ws!(r::JsonReader)
    n = ncodeunits(r.s)
    while r.i <= n && codeunit(r.s, r.i) in (0x20, 0x09, 0x0a, 0x0d)
        r.i += 1
    end
    return nothing
end

function json_peek(r::JsonReader)::UInt8
    json_skip_ws!(r)
    r.i <= ncodeunits(r.s) || json_fail(r, "unexpected end of input")
    return codeunit(r.s, r.i)
end

function json_literal!(r::JsonReader, word::String)
    n = ncodeunits(word)
    last = r.i + n - 1
    ok = last <= ncodeunits(r.s) && codeunits(r.s)[r.i:last] == codeunits(word)
    ok || json_fail(r, "expected '$word'")
    r.i += n
    return nothing
end

function json_hex4!(r::JsonReader)::UInt32
    last = r.i + 3
    last <= ncodeunits(r.s) || json_fail(r, "short \\u escape")
    value = tryparse(UInt32, String(codeunits(r.s)[r.i:last]); base = 16)
    value === nothing && json_fail(r, "bad \\u escape")
    r.i += 4
    return value
end

function json_string!(r::JsonReader)::String
    r.i += 1  # opening quote
    s = r.s
    n = ncodeunits(s)
    buf = IOBuffer()
    while true
        r.i <= n || json_fail(r, "unterminated string")
        c = codeunit(s, r.i)
        if c == UInt8('"')
            r.i += 1
            return String(take!(buf))
        elseif c == UInt8('\\')
            r.i + 1 <= n || json_fail(r, "bad escape")
            e = codeunit(s, r.i + 1)
            r.i += 2
            if e == UInt8('u')
                cp = json_hex4!(r)
                if 0xd800 <= cp <= 0xdbff
                    # a high surrogate must be followed by an escaped low surrogate
                    pair = r.i + 1 <= n && codeunit(s, r.i) == UInt8('\\') &&
                           codeunit(s, r.i + 1) == UInt8('u')
                    pair || json_fail(r, "lone surrogate")
                    r.i += 2
                    lo = json_hex4!(r)
                    0xdc00 <= lo <= 0xdfff || json_fail(r, "bad surrogate pair")
                    cp = 0x00010000 + ((cp - 0x0000d800) << 10) + (lo - 0x0000dc00)
                end
                print(buf, Char(cp))
            else
                mapped = get(JSON_ESCAPES, e, nothing)
                mapped === nothing && json_fail(r, "bad escape")
                write(buf, mapped)
            end
        else
            write(buf, c)
            r.i += 1
        end
    end
end

function json_number!(r::JsonReader)
    s = r.s
    n = ncodeunits(s)
    start = r.i
    while r.i <= n && codeunit(s, r.i) in JSON_NUMBER_BYTES
        r.i += 1
    end
    r.i > start || json_fail(r, "unexpected character")
    text = String(codeunits(s)[start:(r.i - 1)])
    is_float = any(b -> b in (UInt8('.'), UInt8('e'), UInt8('E')), codeunits(text))
    value = is_float ? tryparse(Float64, text) : tryparse(Int64, text)
    value === nothing && (value = tryparse(Float64, text))  # integers beyond Int64
    value === nothing && json_fail(r, "bad number '$text'")
    return value
end

function json_array!(r::JsonReader)::Vector{Any}
    r.i += 1
    out = Any[]
    if json_peek(r) == UInt8(']')
        r.i += 1
        return out
    end
    while true
        push!(out, json_value!(r))
        c = json_peek(r)
        r.i += 1
        c == UInt8(']') && return out
        c == UInt8(',') || json_fail(r, "expected ',' or ']'")
    end
end

function json_object!(r::JsonReader)::Dict{String,Any}
    r.i += 1
    out = Dict{String,Any}()
    if json_peek(r) == UInt8('}')
        r.i += 1
        return out
    end
    while true
        json_peek(r) == UInt8('"') || json_fail(r, "expected a string key")
        key = json_string!(r)
        json_peek(r) == UInt8(':') || json_fail(r, "expected ':'")
        r.i += 1
        out[key] = json_value!(r)
        c = json_peek(r)
        r.i += 1
        c == UInt8('}') && return out
        c == UInt8(',') || json_fail(r, "expected ',' or '}'")
    end
end

function json_value!(r::JsonReader)
    c = json_peek(r)
    if c == UInt8('{')
        return json_object!(r)
    elseif c == UInt8('[')
        return json_array!(r)
    elseif c == UInt8('"')
        return json_string!(r)
    elseif c == UInt8('t')
        json_literal!(r, "true")
        return true
    elseif c == UInt8('f')
        json_literal!(r, "false")
        return false
    elseif c == UInt8('n')
        json_literal!(r, "null")
        return nothing
    end
    return json_number!(r)
end

function json_parse(text::AbstractString)
    r = JsonReader(String(text), 1)
    value = json_value!(r)
    json_skip_ws!(r)
    r.i <= ncodeunits(r.s) && json_fail(r, "trailing characters")
    return value
end

# ---------------------------------------------------------------------------------------------
# JSON, writing
# ---------------------------------------------------------------------------------------------

function json_write_string(io::IO, s::AbstractString)
    print(io, '"')
    for c in s
        if !isvalid(c)
            print(io, '\ufffd')
        elseif c == '"'
            print(io, "\\\"")
        elseif c == '\\'
            print(io, "\\\\")
        elseif c == '\n'
            print(io, "\\n")
        elseif c == '\r'
            print(io, "\\r")
        elseif c == '\t'
            print(io, "\\t")
        elseif c < ' ' || c == '\x7f'
            print(io, "\\u", lpad(string(UInt32(c); base = 16), 4, '0'))
        else
            print(io, c)
        end
    end
    print(io, '"')
    return nothing
end

is_json_scalar(x) = x === nothing || x === missing || x isa Real || x isa AbstractString || x isa Symbol

function json_write(io::IO, x, indent::Int = 0)
    pad = "  "
    if x === nothing || x === missing
        print(io, "null")
    elseif x isa Bool
        print(io, x ? "true" : "false")
    elseif x isa Integer
        print(io, x)
    elseif x isa Real
        v = Float64(x)
        isfinite(v) ? print(io, v) : print(io, "null")
    elseif x isa AbstractString || x isa Symbol
        json_write_string(io, string(x))
    elseif x isa AbstractDict || x isa NamedTuple
        entries = sort!([(string(k), v) for (k, v) in pairs(x)]; by = first)
        if isempty(entries)
            print(io, "{}")
            return nothing
        end
        print(io, "{\n")
        for (i, (k, v)) in enumerate(entries)
            print(io, pad^(indent + 1))
            json_write_string(io, k)
            print(io, ": ")
            json_write(io, v, indent + 1)
            print(io, i < length(entries) ? ",\n" : "\n")
        end
        print(io, pad^indent, "}")
    elseif x isa AbstractVector || x isa Tuple
        items = collect(x)
        if all(is_json_scalar, items)
            print(io, "[")
            for (i, v) in enumerate(items)
                i > 1 && print(io, ", ")
                json_write(io, v, indent)
            end
            print(io, "]")
        else
            print(io, "[\n")
            for (i, v) in enumerate(items)
                print(io, pad^(indent + 1))
                json_write(io, v, indent + 1)
                print(io, i < length(items) ? ",\n" : "\n")
            end
            print(io, pad^indent, "]")
        end
    else
        json_write_string(io, string(x))
    end
    return nothing
end

function json_compact(x)::String
    io = IOBuffer()
    json_write(io, x)
    return replace(String(take!(io)), r"\n\s*" => "")
end

# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

# Readers see either the old file or the new one, never a half-written one: write a hidden
# temporary beside the target, then rename(2) over it (atomic on POSIX file systems).
function write_atomic(writer::Function, path::AbstractString)
    dir = dirname(abspath(path))
    tmp = joinpath(dir, "." * basename(path) * ".tmp." * string(getpid()))
    try
        open(tmp, "w") do io
            writer(io)
            flush(io)
        end
        status = ccall(:rename, Cint, (Cstring, Cstring), tmp, path)
        Base.systemerror("rename $tmp -> $path", status != 0)
    catch
        rm(tmp; force = true)
        rethrow()
    end
    return nothing
end

function write_json_atomically(path::AbstractString, value)
    write_atomic(path) do io
        json_write(io, value)
        print(io, "\n")
    end
    return nothing
end
