# globtim-hpc driver: runs one task of a job on a cluster node.
#
#   JULIA_PROJECT=<the deployment's run environment> \
#   julia --color=no --startup-file=no globtim_driver.jl <params.json> <output_dir>
#
# Reads one parameters file (written by globtim_hpc.jobs.plan), runs the GlobTim pipeline
#   TestInput -> Constructor -> solve_polynomial_system_from_approx -> process_crit_pts
#   -> analyze_critical_points
# (Globtim 1.2.1; every call, keyword and field used is in julia/globtim_api.json, checked by
# tests/unit/test_globtim_api.py)
# for every degree of the task, and writes into <output_dir>:
#   critical_points_deg_<d>.csv   one per finished degree
#   results.json                  after every degree (RUNNING) and at the end
# The contract (files, JSON schema, exit status, heartbeat lines) is docs/output-contract.md and
# schemas/results.schema.json; the Python stand-in tests/stand_in/julia mirrors it.
#
# Exit status: 0 COMPLETED, 1 FAILED, 2 bad command line, 3 PARTIAL, 130 interrupted.
#
# Packages needed in the active project's [deps] (the run environment, globtim_hpc/julia/
# runenv.py): Globtim, HomotopyContinuation, DynamicPolynomials, DataFrames, CSV. JSON is read and written by the small functions below so that a broken or missing JSON
# package can never prevent the FAILED record from being written.

using Dates

const SCHEMA_VERSION = 1
const DRIVER_T0 = time()
const RESULTS_FILE = "results.json"

# A SIGINT (sent by SLURM before the time limit, e.g. sbatch --signal=INT@120) then arrives as an
# InterruptException, so finished degrees are saved with status PARTIAL instead of being lost.
Base.exit_on_sigint(false)

include(joinpath(@__DIR__, "common_io.jl"))

# ---------------------------------------------------------------------------------------------
# Files, heartbeat, bookkeeping
# ---------------------------------------------------------------------------------------------

utc_now() = string(Dates.now(Dates.UTC)) * "Z"

function heartbeat(stage::AbstractString; degree = nothing)
    beat = Dict{String,Any}(
        "time" => utc_now(),
        "stage" => stage,
        "elapsed_s" => round(time() - DRIVER_T0; digits = 3),
    )
    degree === nothing || (beat["degree"] = degree)
    println(stdout, "HEARTBEAT ", json_compact(beat))
    flush(stdout)
    return nothing
end

function write_results(outdir::AbstractString, state::Dict{String,Any})
    state["updated_at"] = utc_now()
    write_atomic(joinpath(outdir, RESULTS_FILE)) do io
        json_write(io, state)
        print(io, "\n")
    end
    return nothing
end

function is_interrupt(err)
    err isa InterruptException && return true
    if err isa TaskFailedException
        return is_interrupt(err.task.exception)
    end
    if err isa CompositeException
        return any(is_interrupt, err.exceptions)
    end
    return false
end

function error_record(err, stage::AbstractString, degree = nothing)
    message = sprint(showerror, err)
    length(message) > 4000 && (message = first(message, 4000) * " …")
    return Dict{String,Any}(
        "type" => string(nameof(typeof(err))),
        "message" => message,
        "stage" => stage,
        "degree" => degree,
    )
end

finite_or_nothing(x) = (x isa Real && isfinite(x)) ? Float64(x) : nothing

const RECORDED_ENV = (
    "JULIA_NUM_THREADS",
    "JULIA_PROJECT",
    "JULIA_DEPOT_PATH",
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_CPUS_PER_TASK",
    "SLURMD_NODENAME",
)

function new_state()::Dict{String,Any}
    return Dict{String,Any}(
        "schema_version" => SCHEMA_VERSION,
        "status" => "RUNNING",
        "problem" => "unknown",
        "entry" => "unknown",
        "task_id" => nothing,
        "params" => Dict{String,Any}(),
        "started_at" => utc_now(),
        "updated_at" => utc_now(),
        "finished_at" => nothing,
        "host" => gethostname(),
        "pid" => getpid(),
        "julia_version" => string(VERSION),
        "globtim_version" => nothing,
        "threads" => Threads.nthreads(),
        "env" => Dict{String,Any}(k => get(ENV, k, nothing) for k in RECORDED_ENV),
        "degrees_planned" => Int[],
        "degrees" => Any[],
        "timings_s" => Dict{String,Any}(),
        "l2_error" => nothing,
        "condition_number" => nothing,
        "n_critical_points" => nothing,
        "n_minima" => nothing,
        "best_value" => nothing,
        "best_point" => nothing,
        "interrupted" => false,
        "error" => nothing,
    )
end

function planned_degrees(params::Dict{String,Any})::Vector{Int}
    degree = get(params, "degree", nothing)
    degree isa Integer || return Int[]
    top = get(params, "degree_max", nothing)
    step = get(params, "degree_step", 1)
    step isa Integer && step >= 1 || (step = 1)
    top isa Integer && top > degree || return [Int(degree)]
    return collect(Int(degree):Int(step):Int(top))
end

# Fill the task-level summary from the per-degree entries: the last finished degree gives the
# approximation figures, the best value is the lowest over all finished degrees.
function summarise!(state::Dict{String,Any})
    done = [d for d in state["degrees"] if d["status"] == "COMPLETED"]
    isempty(done) && return nothing
    last = done[end]
    for key in ("l2_error", "condition_number", "n_critical_points", "n_minima")
        state[key] = last[key]
    end
    scored = [d for d in done if d["best_value"] !== nothing]
    if !isempty(scored)
        best = scored[argmin([d["best_value"] for d in scored])]
        state["best_value"] = best["best_value"]
        state["best_point"] = best["best_point"]
    end
    return nothing
end

# ---------------------------------------------------------------------------------------------
# Start: arguments and parameters first (pure Base), so a broken package environment is still
# reported in results.json.
# ---------------------------------------------------------------------------------------------

if length(ARGS) != 2
    println(stderr, "usage: julia --color=no --startup-file=no globtim_driver.jl <params.json> <output_dir>")
    exit(2)
end

const PARAMS_PATH = abspath(ARGS[1])
const OUTDIR = abspath(ARGS[2])
mkpath(OUTDIR)
const STATE = new_state()

heartbeat("start")
const PARAMS = try
    raw = json_parse(read(PARAMS_PATH, String))
    raw isa Dict{String,Any} || throw(ArgumentError("the parameters file must hold a JSON object"))
    raw
catch err
    STATE["status"] = "FAILED"
    STATE["error"] = error_record(err, "read_params")
    STATE["finished_at"] = utc_now()
    write_results(OUTDIR, STATE)
    println(stderr, "globtim_driver: cannot read parameters: ", sprint(showerror, err))
    exit(1)
end

STATE["params"] = PARAMS
STATE["problem"] = string(get(PARAMS, "problem", "unknown"))
STATE["entry"] = string(get(PARAMS, "entry", "unknown"))
STATE["task_id"] = get(PARAMS, "task_id", nothing)
STATE["degrees_planned"] = STATE["entry"] == "custom" ? Int[] : planned_degrees(PARAMS)
write_results(OUTDIR, STATE)

heartbeat("load_packages")
const LOAD_T0 = time()
const LOAD_ERROR = Ref{Any}(nothing)
try
    using DataFrames
    using CSV
    using DynamicPolynomials
    using HomotopyContinuation  # Globtim's solver extension needs it loaded explicitly
    using Globtim
    # Without the extension every solve errors later (src/poly_solver.jl:169-174); say so now.
    Base.get_extension(Globtim, :GlobtimHomotopyContinuationExt) === nothing && error(
        "Globtim's solver extension GlobtimHomotopyContinuationExt did not load: Globtim needs " *
        "HomotopyContinuation in the active project (the run environment) to build it",
    )
catch err
    LOAD_ERROR[] = err
end
STATE["timings_s"]["load_packages"] = time() - LOAD_T0

# ---------------------------------------------------------------------------------------------
# The GlobTim pipeline
# ---------------------------------------------------------------------------------------------

globtim_symbol(name::AbstractString) = getfield(Globtim, Symbol(name))

function globtim_version()
    try
        v = pkgversion(Globtim)
        return v === nothing ? nothing : string(v)
    catch
        return nothing
    end
end

# Right-hand side of the Lotka-Volterra model: prey u, predator v, parameters (α, β, γ, δ).
lv_rhs(u, v, p) = (p[1] * u - p[2] * u * v, p[4] * u * v - p[3] * v)

# Built with the element type of the parameters, so ForwardDiff's Duals (Globtim's gradients
# and Hessians in analyze_critical_points) pass through instead of failing to convert.
function lv_trajectory(p, u0::Vector{Float64}, t_end::Float64, n_obs::Int, steps::Int)
    per_obs = max(1, cld(steps, n_obs))
    h = t_end / (n_obs * per_obs)
    T = promote_type(eltype(p), Float64)
    u, v = T(u0[1]), T(u0[2])
    out = Matrix{T}(undef, 2, n_obs)
    for k in 1:n_obs
        for _ in 1:per_obs
            k1 = lv_rhs(u, v, p)
            k2 = lv_rhs(u + h / 2 * k1[1], v + h / 2 * k1[2], p)
            k3 = lv_rhs(u + h / 2 * k2[1], v + h / 2 * k2[2], p)
            k4 = lv_rhs(u + h * k3[1], v + h * k3[2], p)
            u += h / 6 * (k1[1] + 2k2[1] + 2k3[1] + k4[1])
            v += h / 6 * (k1[2] + 2k2[2] + 2k3[2] + k4[2])
        end
        out[1, k] = u
        out[2, k] = v
    end
    return out
end

function lotka_volterra_objective(params::Dict{String,Any})
    u0 = Float64.(params["initial_state"])
    t_end = Float64(params["t_end"])
    n_obs = Int(params["n_time_points"])
    steps = Int(params["rk4_steps"])
    reference = lv_trajectory(Float64.(params["true_params"]), u0, t_end, n_obs, steps)
    function misfit(p)
        traj = lv_trajectory(p, u0, t_end, n_obs, steps)
        total = sum(abs2, traj .- reference)
        # A blown-up trajectory would poison the least-squares fit with Inf.
        return isfinite(total) ? total : oftype(total, 1.0e12)
    end
    return misfit
end

function objective_for(params::Dict{String,Any})
    entry = params["entry"]
    if entry == "benchmark"
        return globtim_symbol(string(params["function"]))
    elseif entry == "lotka_volterra"
        return lotka_volterra_objective(params)
    end
    throw(ArgumentError("unknown entry '$entry'"))
end

function make_test_input(f, params::Dict{String,Any})
    dim = Int(params["dim"])
    return Globtim.TestInput(
        f;
        dim = dim,
        center = Float64.(params["center"]),
        GN = Int(params["samples_per_dim"]),
        sample_range = Float64(params["sample_range"]),
    )
end

# Polynomial variables x[1:dim], created at run time so the driver parses without the packages.
function make_variables(dim::Int)
    Core.eval(Main, :(DynamicPolynomials.@polyvar __globtim_x[1:$dim]))
    return Core.eval(Main, :__globtim_x)
end

# Real critical points of the polynomial, solved through the approximant so that its own
# basis, normalisation and precision are used (src/poly_solver.jl:354, 367-370).
solve_critical_points(x, pol) = Globtim.solve_polynomial_system_from_approx(x, pol)

# The solutions live on the reference box [-1, 1]^n. process_crit_pts keeps points outside it
# when every one lies outside (src/ParsingOutputs.jl:40-51); the contract says critical points
# lie in the sampled box, so those are dropped here and counted.
in_box(p) = all(c -> -1 <= c <= 1, p)

# Columns in dimension order: process_crit_pts builds its DataFrame from a Dict, which sorts
# x1, x10, x2, ... (src/ParsingOutputs.jl:118-123).
function ordered_columns(df, dim::Int)
    first_cols = vcat(["x$i" for i in 1:dim], ["z"])
    present = string.(DataFrames.names(df))
    lead = [c for c in first_cols if c in present]
    return df[:, vcat(lead, [c for c in present if !(c in lead)])]
end

function point_columns(df, dim::Int, prefix::String)
    names_here = Set(string.(DataFrames.names(df)))
    cols = [prefix * string(i) for i in 1:dim]
    all(c -> c in names_here, cols) || return nothing
    return cols
end

function best_of(df, dim::Int, value_col::String, prefix::String)
    (df === nothing || DataFrames.nrow(df) == 0) && return (nothing, nothing)
    value_col in string.(DataFrames.names(df)) || return (nothing, nothing)
    cols = point_columns(df, dim, prefix)
    cols === nothing && return (nothing, nothing)
    values = Float64.(df[!, value_col])
    finite = findall(isfinite, values)
    isempty(finite) && return (nothing, nothing)
    i = finite[argmin(values[finite])]
    return (values[i], [Float64(df[i, c]) for c in cols])
end

function run_degree!(state::Dict{String,Any}, outdir::String, f, TR, params, degree::Int)
    dim = Int(params["dim"])
    timings = Dict{String,Any}()
    entry = Dict{String,Any}(
        "degree" => degree,
        "status" => "FAILED",
        "samples" => (Int(params["samples_per_dim"]) + 1)^dim,
        "basis_size" => nothing,
        "l2_error" => nothing,
        "condition_number" => nothing,
        "n_solutions" => nothing,
        "n_outside_box" => nothing,
        "n_critical_points" => nothing,
        "n_minima" => nothing,
        "best_value" => nothing,
        "best_point" => nothing,
        "csv" => nothing,
        "timings_s" => timings,
        "error" => nothing,
    )
    stage = "construct"
    t_degree = time()
    try
        heartbeat(stage; degree = degree)
        t = time()
        # Globtim 1.2.1 fits in Float64 whatever `precision` says, so the driver offers none
        # (docs/output-contract.md) and Constructor keeps its default.
        pol = Globtim.Constructor(TR, degree; basis = Symbol(params["basis"]))
        timings["construct"] = time() - t
        entry["l2_error"] = finite_or_nothing(pol.nrm)
        hasproperty(pol, :cond_vandermonde) &&
            (entry["condition_number"] = finite_or_nothing(pol.cond_vandermonde))
        hasproperty(pol, :N) && (entry["samples"] = Int(pol.N))
        entry["basis_size"] = length(pol.coeffs)

        stage = "solve"
        heartbeat(stage; degree = degree)
        t = time()
        x = make_variables(dim)
        solutions = solve_critical_points(x, pol)
        timings["solve"] = time() - t
        inside = filter(in_box, solutions)
        entry["n_solutions"] = length(solutions)
        entry["n_outside_box"] = length(solutions) - length(inside)

        stage = "process"
        heartbeat(stage; degree = degree)
        t = time()
        df = Globtim.process_crit_pts(inside, f, TR)
        timings["process"] = time() - t
        entry["n_critical_points"] = DataFrames.nrow(df)

        stage = "analyze"
        heartbeat(stage; degree = degree)
        t = time()
        df_min = nothing
        if DataFrames.nrow(df) > 0
            df, df_min = Globtim.analyze_critical_points(
                f,
                df,
                TR;
                enable_hessian = Bool(get(params, "enable_hessian", true)),
                tol_dist = Float64(get(params, "tol_dist", 0.025)),
                verbose = false,
            )
            entry["n_minima"] = DataFrames.nrow(df_min)
        else
            entry["n_minima"] = 0
        end
        df = ordered_columns(df, dim)
        timings["analyze"] = time() - t
        best_value, best_point = best_of(df_min, dim, "value", "x")
        if best_value === nothing
            best_value, best_point = best_of(df, dim, "z", "x")
        end
        entry["best_value"] = best_value
        entry["best_point"] = best_point

        stage = "write"
        csv_name = "critical_points_deg_$(degree).csv"
        write_atomic(joinpath(outdir, csv_name)) do io
            CSV.write(io, df)
        end
        entry["csv"] = csv_name
        entry["status"] = "COMPLETED"
    catch err
        entry["error"] = error_record(err, stage, degree)
        timings["total"] = time() - t_degree
        push!(state["degrees"], entry)
        is_interrupt(err) && rethrow()
        return false
    end
    timings["total"] = time() - t_degree
    push!(state["degrees"], entry)
    return true
end

function run_globtim!(state::Dict{String,Any}, outdir::String, params::Dict{String,Any})
    heartbeat("setup")
    t = time()
    f = objective_for(params)
    TR = make_test_input(f, params)
    state["timings_s"]["setup"] = time() - t
    for degree in state["degrees_planned"]
        run_degree!(state, outdir, f, TR, params, degree)
        summarise!(state)
        write_results(outdir, state)
    end
    done = count(d -> d["status"] == "COMPLETED", state["degrees"])
    if done == length(state["degrees_planned"]) && done > 0
        state["status"] = "COMPLETED"
    elseif done > 0
        state["status"] = "PARTIAL"
    else
        state["status"] = "FAILED"
        failed = [d for d in state["degrees"] if d["error"] !== nothing]
        state["error"] = isempty(failed) ?
            Dict{String,Any}("type" => "NoDegrees", "message" => "no degree to run", "stage" => "setup", "degree" => nothing) :
            failed[1]["error"]
    end
    return nothing
end

# The run folder holds params/<task>.json and user/…; GLOBTIM_RUN_DIR overrides the guess.
function run_dir(params_path::String)::String
    from_env = get(ENV, "GLOBTIM_RUN_DIR", "")
    isempty(from_env) || return abspath(from_env)
    return dirname(dirname(params_path))
end

function run_custom!(state::Dict{String,Any}, outdir::String, params::Dict{String,Any})
    heartbeat("custom")
    t = time()
    script = string(params["script"])
    isabspath(script) || (script = joinpath(run_dir(PARAMS_PATH), script))
    isfile(script) || throw(ArgumentError("custom script not found: $script"))
    # A fresh module keeps the user's names away from the driver's.
    mod = Module(:GlobtimUserScript)
    try
        Core.eval(mod, :(include(p::AbstractString) = Base.include($mod, p)))
    catch
    end
    Base.include(mod, script)
    isdefined(mod, :run_custom) ||
        throw(ArgumentError("$script must define run_custom(params::Dict{String,Any}, outdir::String)"))
    result = Base.invokelatest(getfield(mod, :run_custom), params, outdir)
    state["custom"] = result
    if result isa AbstractDict
        for key in ("l2_error", "condition_number", "best_value")
            haskey(result, key) && (state[key] = finite_or_nothing(result[key]))
        end
        for key in ("n_critical_points", "n_minima")
            value = get(result, key, nothing)
            value isa Integer && value >= 0 && (state[key] = Int(value))
        end
        point = get(result, "best_point", nothing)
        point isa AbstractVector && all(p -> p isa Real, point) && (state["best_point"] = Float64.(point))
    end
    state["timings_s"]["custom"] = time() - t
    state["status"] = "COMPLETED"
    return nothing
end

const EXIT_STATUS = Dict("COMPLETED" => 0, "FAILED" => 1, "PARTIAL" => 3)

function finish(state::Dict{String,Any}, outdir::String)::Int
    state["finished_at"] = utc_now()
    state["timings_s"]["total"] = time() - DRIVER_T0
    write_results(outdir, state)
    heartbeat("done")
    return state["interrupted"] ? 130 : EXIT_STATUS[state["status"]]
end

function main()::Int
    state = STATE
    try
        LOAD_ERROR[] === nothing || throw(LOAD_ERROR[])
        state["globtim_version"] = globtim_version()
        if state["entry"] == "custom"
            run_custom!(state, OUTDIR, PARAMS)
        else
            run_globtim!(state, OUTDIR, PARAMS)
        end
    catch err
        stage = LOAD_ERROR[] !== nothing ? "load_packages" :
                state["entry"] == "custom" ? "custom" : "setup"
        if is_interrupt(err)
            state["interrupted"] = true
            stage = "interrupted"
        end
        summarise!(state)
        done = count(d -> d["status"] == "COMPLETED", state["degrees"])
        state["status"] = done > 0 ? "PARTIAL" : "FAILED"
        state["error"] = error_record(err, stage)
        showerror(stderr, err, catch_backtrace())
        println(stderr)
    end
    return finish(state, OUTDIR)
end

exit(main())
