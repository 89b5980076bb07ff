---@brief `:checkhealth codestral`: Neovim version, the server command, the running server and its model.

local M = {}

local health = vim.health

local function check_neovim()
  local v = vim.version()
  local version = ("%d.%d.%d"):format(v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. version)
  else
    health.error("Neovim " .. version .. ": codestral needs 0.10 or newer")
  end
end

---@param config codestral.Config
local function check_command(config)
  if vim.is_callable(config.cmd) then
    return health.ok("server: an in-process function")
  end
  local exe = config.cmd[1]
  local cmdline = table.concat(config.cmd, " ")
  if vim.fn.executable(exe) == 1 then
    health.ok(("server command `%s` (%s)"):format(cmdline, vim.fn.exepath(exe)))
  else
    health.error(("server command `%s`: %s is not executable"):format(cmdline, exe), {
      "Install the server: the codestral-lsp Python package provides the command",
      "Or point setup({ cmd = {...} }) at it, e.g. { 'python3', '-m', 'codestral_lsp', 'serve' }",
    })
  end
end

local function check_servers()
  local client_mod = require("codestral.client")
  local clients = vim.lsp.get_clients({ name = client_mod.name })
  if #clients == 0 then
    local exit = client_mod.last_exit
    if exit and (exit.code ~= 0 or exit.signal ~= 0) then
      return health.error(
        ("the server exited with code %d, signal %d"):format(exit.code, exit.signal),
        { "See the server's messages with :LspLog" }
      )
    end
    return health.warn("no server running: open a file of a configured filetype")
  end
  for _, client in ipairs(clients) do
    local buffers = vim.tbl_count(client.attached_buffers or {})
    health.ok(
      ("server running (client id %d, %d buffer(s), encoding %s)"):format(client.id, buffers, client.offset_encoding)
    )
    local s = client_mod.statuses[client.id]
    local detail = s
      and ("%s%s%s%s"):format(
        s.model or "model",
        s.message and s.message ~= "" and ": " .. s.message or "",
        s.lastLatencyMs and (", last completion %.0f ms"):format(s.lastLatencyMs) or "",
        type(s.lastBackend) == "string" and (" from %s"):format(s.lastBackend) or ""
      )
    if not s then
      health.warn("no codestral/status received from the server yet")
    elseif s.state == "ready" then
      health.ok("model loaded: " .. detail)
    elseif s.state == "loading" then
      health.warn("model loading: " .. detail)
    elseif s.state == "disabled" then
      health.warn("completions disabled: " .. detail, { "Check the completion.enabled setting" })
    else
      health.error("model failed: " .. detail, { "Check the model.path setting or the --model argument" })
    end
  end
end

function M.check()
  health.start("codestral")
  check_neovim()
  local config = require("codestral").config
  if not config then
    return health.warn("setup() has not been called", { 'Call require("codestral").setup()' })
  end
  check_command(config)
  check_servers()
end

return M
