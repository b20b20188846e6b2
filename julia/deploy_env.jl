# Install and precompile the run environment's packages into JULIA_DEPOT_PATH.
#
# Shipped by deploy_julia.py into <code dir>/.globtim-hpc/ and run where the network is (the
# login node, or a job when compute nodes can reach the package servers):
#
#     JULIA_DEPOT_PATH=<depot> julia --project=<run env> deploy_env.jl <result.json>
#
# The run environment (<code dir>/.globtim-hpc/runenv, globtim_hpc/julia/runenv.py) has no
# Manifest.toml yet: Pkg.instantiate resolves it and writes one; its sha256 is reported.
# Writes <result.json> (ok, julia_version, elapsed_s, packages, manifest_sha256, error) and
# exits 0 on success.

import Pkg
import SHA

include(joinpath(@__DIR__, "common_io.jl"))

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
        manifest = joinpath(dirname(Base.active_project()), "Manifest.toml")
        isfile(manifest) && (result["manifest_sha256"] = bytes2hex(open(SHA.sha256, manifest)))
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
