# Prove that the deployed project loads offline on a compute node, and report versions.
#
# Run by deploy_julia.py in a verification job, with JULIA_PKG_OFFLINE=true:
#
#     julia --project=<code dir> verify_env.jl <result.json> <package>...
#
# Loads each named package (e.g. GlobTim and HomotopyContinuation) and writes <result.json>:
# ok, julia_version, hostname, depot, offline, manifest_sha256, and per package its version or
# the error that loading it raised. Exits 0 only if every package loaded.

import Pkg
import SHA

include(joinpath(@__DIR__, "common_io.jl"))

function manifest_sha256(project_dir::AbstractString)
    for name in ("JuliaManifest.toml", "Manifest.toml")
        path = joinpath(project_dir, name)
        isfile(path) && return bytes2hex(open(SHA.sha256, path))
    end
    return nothing
end

# The version a package declares, or the one recorded in the manifest as a fallback.
function package_version(name::AbstractString, mod::Module)
    if isdefined(Base, :pkgversion)
        v = Base.pkgversion(mod)
        v === nothing || return string(v)
    end
    for (_, info) in Pkg.dependencies()
        info.name == name && info.version !== nothing && return string(info.version)
    end
    return nothing
end

function main(args)
    isempty(args) && (println(stderr, "usage: verify_env.jl RESULT.json PACKAGE..."); return 2)
    result_path = args[1]
    project_dir = dirname(something(Base.active_project(), ""))
    packages = Dict{String,Any}()
    ok = true
    for name in args[2:end]
        entry = Dict{String,Any}()
        try
            mod = Base.require(Main, Symbol(name))
            entry["loaded"] = true
            entry["version"] = package_version(name, mod)
        catch err
            ok = false
            entry["loaded"] = false
            entry["error"] = sprint(showerror, err)
            println(stderr, "cannot load ", name, ": ", entry["error"])
        end
        packages[name] = entry
    end
    result = Dict{String,Any}(
        "ok" => ok,
        "julia_version" => string(VERSION),
        "hostname" => gethostname(),
        "project" => project_dir,
        "depot" => join(DEPOT_PATH, ":"),
        "offline" => get(ENV, "JULIA_PKG_OFFLINE", "") == "true",
        "manifest_sha256" => manifest_sha256(project_dir),
        "packages" => packages,
    )
    write_json_atomically(result_path, result)
    return ok ? 0 : 1
end

exit(main(ARGS))
