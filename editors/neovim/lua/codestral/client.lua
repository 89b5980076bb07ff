---@brief The LSP side: starts one `codestral-lsp serve` for all matching buffers, keeps the server's
--- `codestral/status`, and pushes settings. Uses vim.lsp.config/enable on 0.11+, vim.lsp.start on 0.10.

local M = {}

M.name = "codestral"

---@class codestral.Status
---@field state "loading"|"ready"|"error"|"disabled"
---@field message string
---@field lastLatencyMs number|nil
---@field model string|nil
---@field lastBackend string|nil the backend that answered the last suggestion shown

---@type table<integer, codestral.Status> client id -> the last `codestral/status` it sent
M.statuses = {}

---@type { code: integer, signal: integer }|nil how the last server that stopped ended
M.last_exit = nil

local nvim_011 = vim.fn.has("nvim-0.11") == 1

--- Calls a client method on 0.11 (`client:m()`) and 0.10 (`client.m()`) alike.
---@param client vim.lsp.Client
---@param method string
function M.call(client, method, ...)
  if nvim_011 then
    return client[method](client, ...)
  end
  return client[method](...)
end

---@param bufnr? integer
---@return vim.lsp.Client|nil
function M.get(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = M.name })[1]
end

--- The status of the buffer's server, or of any running one.
---@param bufnr? integer
---@return codestral.Status|nil
function M.status(bufnr)
  local client = M.get(bufnr) or vim.lsp.get_clients({ name = M.name })[1]
  return client and M.statuses[client.id]
end

---@type lsp.Handler
local function on_status(_, result, ctx)
  for key, value in pairs(result) do
    result[key] = value ~= vim.NIL and value or nil
  end
  local previous = M.statuses[ctx.client_id]
  M.statuses[ctx.client_id] = result
  if
    result.state == "error" and not (previous and previous.state == "error" and previous.message == result.message)
  then
    vim.notify("codestral: " .. (result.message or "error"), vim.log.levels.ERROR)
  end
  if result.state == "ready" and previous and previous.state == "loading" then
    -- What was typed during the load got empty answers: ask again where the cursor is now.
    vim.schedule(function()
      require("codestral.suggestion").on_ready(ctx.client_id)
    end)
  end
  vim.api.nvim_exec_autocmds("User", { pattern = "CodestralStatus", modeline = false, data = result })
end

--- The cascade's `codestral/inlineCompletionRefresh` {uri, version}: a better suggestion waits for that version of
--- the document; ask again if the user is still there (the current buffer, unchanged, in insert mode).
local function on_refresh(_, result)
  vim.schedule(function()
    local bufnr = vim.uri_to_bufnr(result.uri)
    local versions = vim.lsp.util.buf_versions
    if
      bufnr == vim.api.nvim_get_current_buf()
      and versions[bufnr] == result.version
      and vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
    then
      require("codestral.suggestion").request(2) -- Automatic: the kept answer, not another escalation
    end
  end)
end

--- One server process for every buffer: the model is loaded once, whatever the project root.
local function reuse(client, config)
  return client.name == config.name and not M.call(client, "is_stopped")
end

--- A copy of a settings tree whose empty tables encode as JSON objects, not arrays.
---@param tree table
---@return table
local function as_object(tree)
  if vim.tbl_isempty(tree) then
    return vim.empty_dict()
  end
  local out = {}
  for key, value in pairs(tree) do
    out[key] = type(value) == "table" and as_object(value) or value
  end
  return out
end

---@param config codestral.Config
---@return vim.lsp.ClientConfig
local function client_config(config)
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.textDocument.inlineCompletion = { dynamicRegistration = false }
  return {
    name = M.name,
    cmd = config.cmd,
    filetypes = not vim.tbl_contains(config.filetypes, "*") and config.filetypes or nil,
    init_options = as_object(config.settings),
    -- Wrapped in the section name, so workspace/configuration {section = "codestral"} finds it too.
    settings = { codestral = as_object(config.settings) },
    capabilities = capabilities,
    handlers = { ["codestral/status"] = on_status, ["codestral/inlineCompletionRefresh"] = on_refresh },
    reuse_client = reuse,
    on_exit = function(code, signal, client_id)
      M.statuses[client_id] = nil
      M.last_exit = { code = code, signal = signal }
    end,
  }
end

---@param bufnr integer
---@param filetypes string[]
local function matches(bufnr, filetypes)
  return vim.bo[bufnr].buftype == ""
    and (vim.tbl_contains(filetypes, "*") or vim.tbl_contains(filetypes, vim.bo[bufnr].filetype))
end

--- Starts the server for matching buffers, now and as they open; safe to call again with new options.
---@param config codestral.Config
function M.enable(config)
  local lsp_config = client_config(config)
  if nvim_011 then
    vim.lsp.config[M.name] = lsp_config
    vim.lsp.enable(M.name)
  else
    local function start(bufnr)
      if matches(bufnr, config.filetypes) then
        vim.lsp.start(lsp_config, { bufnr = bufnr, reuse_client = reuse })
      end
    end
    vim.api.nvim_create_autocmd("FileType", {
      group = vim.api.nvim_create_augroup("codestral.lsp", { clear = true }),
      callback = function(args)
        start(args.buf)
      end,
    })
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        start(bufnr)
      end
    end
  end
  M.push_settings(config.settings)
end

--- Sends the settings tree to running servers (workspace/didChangeConfiguration).
---@param settings table
function M.push_settings(settings)
  for _, client in ipairs(vim.lsp.get_clients({ name = M.name })) do
    client.settings = { codestral = as_object(settings) }
    if client.initialized then
      M.call(client, "notify", "workspace/didChangeConfiguration", { settings = client.settings })
    end
  end
end

return M
