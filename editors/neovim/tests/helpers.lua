-- Test helpers: a child Neovim driven over RPC (real insert mode, real timers and autocommands),
-- assertions, and the command that starts the real server.
--
-- Environment: CODESTRAL_TEST_PYTHON (default python3) runs `-m codestral_lsp serve`;
-- CODESTRAL_TEST_MODEL, when set, is passed as --model; CODESTRAL_TEST_TIMEOUT_MS bounds model loading.

local M = {}

M.plugin_root =
  vim.fs.dirname(vim.fs.dirname(vim.fs.normalize(vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p"))))

M.repo_root = vim.fs.dirname(vim.fs.dirname(M.plugin_root))

M.load_timeout = tonumber(os.getenv("CODESTRAL_TEST_TIMEOUT_MS")) or 180000

---@return string[]
function M.server_cmd()
  local cmd = { os.getenv("CODESTRAL_TEST_PYTHON") or "python3", "-m", "codestral_lsp", "serve" }
  local model = os.getenv("CODESTRAL_TEST_MODEL")
  if model and model ~= "" then
    vim.list_extend(cmd, { "--model", model })
  end
  return cmd
end

function M.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(
      ("%s:\n  expected: %s\n  actual:   %s"):format(
        what or "values differ",
        vim.inspect(expected),
        vim.inspect(actual)
      ),
      2
    )
  end
end

function M.ok(value, what)
  if not value then
    error(what or "expected a true value", 2)
  end
  return value
end

---@class Child
---@field chan integer
---@field dir string
---@field stderr string[]
local Child = {}
Child.__index = Child

local children = {} ---@type Child[]

--- Starts `nvim --embed --headless --clean` with this plugin and tests/ on its paths, files and logs
--- in a fresh temporary folder.
---@return Child
function M.child()
  local dir = vim.fn.tempname()
  vim.fn.mkdir(dir, "p")
  local self = setmetatable({ dir = dir, stderr = {} }, Child)
  local env = {}
  for _, xdg in ipairs({ "CONFIG", "DATA", "STATE", "CACHE" }) do
    env["XDG_" .. xdg .. "_HOME"] = dir .. "/" .. xdg:lower()
  end
  -- No remote-plugin providers: probing for them (python's ftplugin asks for python3) takes seconds.
  local no_providers = "let g:loaded_python3_provider = 0 | let g:loaded_node_provider = 0 | "
    .. "let g:loaded_perl_provider = 0 | let g:loaded_ruby_provider = 0"
  -- $CODESTRAL_TEST_NVIM: the same Neovim the runner was started as, when that is a wrapper script.
  local nvim = vim.env.CODESTRAL_TEST_NVIM or vim.v.progpath
  self.chan = vim.fn.jobstart({ nvim, "--embed", "--headless", "--clean", "-n", "--cmd", no_providers }, {
    rpc = true,
    env = env,
    cwd = M.repo_root, -- where `python -m codestral_lsp` finds the package when it is not installed
    on_stderr = function(_, data)
      vim.list_extend(self.stderr, data)
    end,
  })
  assert(self.chan > 0, "could not start " .. nvim)
  children[#children + 1] = self
  self:lua(
    [[
    local root = ...
    vim.opt.rtp:prepend(root)
    package.path = root .. "/tests/?.lua;" .. package.path
    vim.cmd.runtime("plugin/codestral.lua")
    vim.lsp.set_log_level("debug")
    -- The buffer's text split at the cursor: { before, after }.
    function _G.around_cursor()
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), "\n")
      local offset = vim.fn.line2byte(row) - 1 + col
      return { text:sub(1, offset), text:sub(offset + 1) }
    end
  ]],
    M.plugin_root
  )
  return self
end

--- Runs Lua in the child and returns its value.
function Child:lua(code, ...)
  return vim.rpcrequest(self.chan, "nvim_exec_lua", code, { ... })
end

--- Types keys in the child, as a user would (`<Esc>`, `<Tab>`, `<M-w>` notation).
function Child:input(keys)
  vim.rpcrequest(self.chan, "nvim_input", keys)
end

--- Polls the Lua expression `expr` in the child until it is truthy; returns its value.
---@param expr string
---@param timeout? integer ms
function Child:wait(expr, timeout, ...)
  local deadline = vim.uv.now() + (timeout or 10000)
  repeat
    local value = self:lua("return " .. expr, ...)
    if value and value ~= vim.NIL then
      return value
    end
    vim.wait(20)
    vim.uv.update_time()
  until vim.uv.now() > deadline
  error(("timed out after %d ms waiting for: %s"):format(timeout or 10000, expr), 2)
end

--- Waits for the server's "ready" status (the model loaded); fails at once if the server exits.
function Child:wait_ready()
  local state = self:wait(
    [[(function()
      local status = require("codestral").status()
      if status and status.state ~= "loading" then
        return status.state
      end
      return require("codestral.client").last_exit and "exited" or nil
    end)()]],
    M.load_timeout
  )
  M.eq("ready", state, "server status")
end

--- Waits until the child's mode and typeahead have settled (all input processed).
function Child:settle()
  self:wait("vim.fn.getchar(1) == 0")
end

--- Edits a new file `name` in the child's folder, with `lines` in it.
function Child:edit(name, lines)
  local path = self.dir .. "/" .. name
  vim.fn.writefile(lines or {}, path)
  self:lua("vim.cmd.edit(vim.fn.fnameescape(...))", path)
end

--- The buffer's text split at the cursor: before, after.
---@return string, string
function Child:around_cursor()
  local parts = self:lua("return around_cursor()")
  return parts[1], parts[2]
end

--- The ghost-text extmarks, with details.
function Child:extmarks()
  return self:lua([[
    local ns = vim.api.nvim_get_namespaces().codestral
    return ns and vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true }) or {}
  ]])
end

function Child:messages()
  return self:lua("return vim.api.nvim_exec2('messages', { output = true }).output")
end

function Child:stop()
  pcall(vim.rpcrequest, self.chan, "nvim_command", "qa!")
  vim.fn.jobwait({ self.chan }, 2000)
  vim.fn.jobstop(self.chan)
end

--- What the children said: messages, stderr and the end of the LSP log (for failure reports).
function M.diagnostics()
  local out = {}
  for _, child in ipairs(children) do
    local ok, messages = pcall(child.messages, child)
    out[#out + 1] = "--- child messages:\n" .. (ok and messages or "(child not responding)")
    out[#out + 1] = "--- child stderr:\n" .. table.concat(child.stderr, "\n")
    local path = child.dir .. "/state/nvim/lsp.log"
    local log = vim.fn.filereadable(path) == 1 and vim.fn.readfile(path) or {}
    out[#out + 1] = "--- lsp.log (last 40 lines):\n" .. table.concat(vim.list_slice(log, math.max(1, #log - 39)), "\n")
  end
  return table.concat(out, "\n")
end

function M.stop_all()
  for _, child in ipairs(children) do
    child:stop()
  end
  children = {}
end

return M
