# Install and precompile the deployed project's dependencies into JULIA_DEPOT_PATH.
#
# Shipped by deploy_julia.py into <code dir>/.globtim-hpc/ and run where the network is (the
# login node, or a job when compute nodes can reach the package servers):
#
#     JULIA_DEPOT_PATH=<depot> julia --project=<code dir> deploy_env.jl <result.json>
#
# Writes <result.json> (ok, julia_version, elapsed_s, packages, error) and exits 0 on success.

import Pkg

function json_escape(io::IO, s::AbstractString)
    print(io, '"')
    for c in s
        if c == '"'
            print(io, "\\\"")
        elseif c == '\\'
            print(io, "\\\\")
        elseif c == '\n'
            print(io, "\\n")
        elseif c < ' '
            print(io, "\\u", lpad(string(UInt32(c); base = 16), 4, '0'))
        else
            print(io, c)
        end
    end
    print(io, '"')
end

function json_write(io::IO, value)
    if value === nothing
        print(io, "null")
    elseif value isa Bool
        print(io, value ? "true" : "false")
    elseif value isa Real
        isfinite(value) ? print(io, value) : print(io, "null")
    elseif value isa AbstractString
        json_escape(io, value)
    elseif value isa AbstractDict
        print(io, '{')
        for (i, key) in enumerate(sort!(collect(keys(value))))
            i > 1 && print(io, ',')
            json_escape(io, string(key))
            print(io, ':')
            json_write(io, value[key])
        end
        print(io, '}')
    elseif value isa AbstractVector
        print(io, '[')
        for (i, item) in enumerate(value)
            i > 1 && print(io, ',')
            json_write(io, item)
        end
        print(io, ']')
    else
        json_escape(io, string(value))
    end
end

# Written beside the target, then renamed: a reader never sees half a file.
function write_json_atomically(path::AbstractString, value)
    tmp = path * ".tmp"
    open(tmp, "w") do io
        json_write(io, value)
        println(io)
    end
    mv(tmp, path; force = true)
end

function main(args)
    result_path = isempty(args) ? "" : args[1]
    started = time()
    result = Dict{String,Any}(
        "julia_version" => string(VERSION),
        "project" => dirname(something(Base.active_project(), "")),
        "depot" => join(DEPOT_PATH, ":"),
        "hostname" => gethostname(),
    )
    ok = true
    try
        Pkg.instantiate()
        Pkg.precompile()
        packages = Dict{String,Any}()
        for (_, info) in Pkg.dependencies()
            if info.is_direct_dep && info.version !== nothing
                packages[info.name] = string(info.version)
            end
        end
        result["packages"] = packages
    catch err
        ok = false
        result["error"] = sprint(showerror, err)
        showerror(stderr, err)
        println(stderr)
    end
    result["ok"] = ok
    result["elapsed_s"] = round(time() - started; digits = 3)
    isempty(result_path) || write_json_atomically(result_path, result)
    return ok ? 0 : 1
end

exit(main(ARGS))
