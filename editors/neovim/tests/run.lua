-- A small spec runner: describe/it/before_each/after_each/after_all, one line per test, exit status 1
-- on any failure. Each spec drives a child Neovim (tests/helpers.lua) the way a user would.
--
--   nvim --headless -u NONE -l tests/run.lua [tests/foo_spec.lua ...]    (default: every tests/*_spec.lua)

local tests_dir = vim.fs.dirname(vim.fs.normalize(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p")))
package.path = tests_dir .. "/?.lua;" .. package.path

local helpers = require("helpers")

local function say(text)
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

---@class Suite
---@field name string
---@field before function[]
---@field after function[]

local cases = {} ---@type { name: string, fn: function, suites: Suite[] }[]
local finals = {} ---@type function[]
local stack ---@type Suite[] the file's root suite, then the describe() blocks open

function _G.describe(name, fn)
  stack[#stack + 1] = { name = name, before = {}, after = {} }
  fn()
  stack[#stack] = nil
end

function _G.it(name, fn)
  local names = {}
  for i = 2, #stack do
    names[#names + 1] = stack[i].name
  end
  names[#names + 1] = name
  cases[#cases + 1] = { name = table.concat(names, " > "), fn = fn, suites = vim.list_slice(stack) }
end

function _G.before_each(fn)
  table.insert(stack[#stack].before, fn)
end

function _G.after_each(fn)
  table.insert(stack[#stack].after, fn)
end

--- Runs once, after the last test of the file.
function _G.after_all(fn)
  finals[#finals + 1] = fn
end

local function run_case(case)
  local ok, err = xpcall(function()
    for _, suite in ipairs(case.suites) do
      for _, fn in ipairs(suite.before) do
        fn()
      end
    end
    case.fn()
  end, debug.traceback)
  for i = #case.suites, 1, -1 do
    for _, fn in ipairs(case.suites[i].after) do
      local after_ok, after_err = xpcall(fn, debug.traceback)
      if ok and not after_ok then
        ok, err = false, after_err
      end
    end
  end
  return ok, err
end

local files = #_G.arg > 0 and _G.arg or vim.fn.glob(tests_dir .. "/*_spec.lua", false, true)
local failed, total, started = 0, 0, vim.uv.hrtime()
for _, file in ipairs(files) do
  cases, finals, stack = {}, {}, { { name = "", before = {}, after = {} } }
  say(("# %s"):format(vim.fn.fnamemodify(file, ":t")))
  local loaded, load_err = xpcall(dofile, debug.traceback, file)
  if not loaded then
    failed = failed + 1
    say("FAIL loading " .. file .. "\n" .. load_err)
  end
  for _, case in ipairs(cases) do
    total = total + 1
    local t0 = vim.uv.hrtime()
    local ok, err = run_case(case)
    local ms = (vim.uv.hrtime() - t0) / 1e6
    if ok then
      say(("ok   %s (%d ms)"):format(case.name, ms))
    else
      failed = failed + 1
      say(("FAIL %s (%d ms)\n%s\n%s"):format(case.name, ms, err, helpers.diagnostics()))
    end
  end
  for _, fn in ipairs(finals) do
    pcall(fn)
  end
  helpers.stop_all()
end
say(("# %d tests, %d failed, %.1f s"):format(total, failed, (vim.uv.hrtime() - started) / 1e9))
os.exit(failed > 0 and 1 or 0)
