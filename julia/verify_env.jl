# Prove that the run environment loads offline on a compute node, and report versions.
#
# Run by deploy_julia.py in a verification job, with JULIA_PKG_OFFLINE=true:
#
#     julia --project=<run env> verify_env.jl <result.json> <package>... \
#           [--extension <package>:<extension>]...
#
# Loads each named package (exactly what globtim_driver.jl loads) and then checks that each
# named package extension was built and loaded, e.g. Globtim's solver extension:
# `Base.get_extension(Globtim, :GlobtimHomotopyContinuationExt) !== nothing` (Globtim 1.2.1,
# Project.toml [extensions]; without it every solve errors, src/poly_solver.jl:169-174).
# Writes <result.json>: ok, julia_version, hostname, depot, offline, manifest_sha256, per
# package its version or the error that loading it raised, per extension loaded or the error.
# Exits 0 only if every package and extension loaded.

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
    modules = Dict{String,Module}()
    names = String[]
    wanted_extensions = Tuple{String,String}[]
    rest = args[2:end]
    i = 1
    while i <= length(rest)
        if rest[i] == "--extension" && i < length(rest)
            owner, ext = split(rest[i + 1], ":"; limit = 2)
            push!(wanted_extensions, (String(owner), String(ext)))
            i += 2
        else
            push!(names, rest[i])
            i += 1
        end
    end
    ok = true
    for name in names
        entry = Dict{String,Any}()
        try
            mod = Base.require(Main, Symbol(name))
            modules[name] = mod
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
    extensions = Dict{String,Any}()
    for (owner, ext) in wanted_extensions
        loaded = haskey(modules, owner) && Base.get_extension(modules[owner], Symbol(ext)) !== nothing
        entry = Dict{String,Any}("loaded" => loaded, "package" => owner)
        if !loaded
            ok = false
            entry["error"] = "Base.get_extension($owner, :$ext) returned nothing: the extension did not load"
            println(stderr, "cannot load ", ext, ": ", entry["error"])
        end
        extensions[ext] = entry
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
        "extensions" => extensions,
    )
    write_json_atomically(result_path, result)
    return ok ? 0 : 1
end

exit(main(ARGS))
